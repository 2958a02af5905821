"""Transparent rules of the gate: phrasings where a regular expression is more reliable than a model.

`find_rule(text)` returns the first rule that fires on a message (self-harm first, because it gets
a caring reply rather than a refusal); `is_chitchat(text)` says whether a message is nothing but
greetings and thanks. Rules see the text lowercased, without accents, in every supported language.
Questions *about* attacks ("¿por qué funciona 'ignora tus instrucciones'?") are excused by a guard
and left to the classifier. It does not score anything and knows nothing about the course.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tutor.text import fold

_W = r"[^\W_]"  # one letter or digit, any script


@dataclass(frozen=True)
class Rule:
    reason: str  # an unsafe reason of GateDecision
    name: str  # shown in `tutor gate --json`, so an instructor can see which rule fired
    pattern: re.Pattern[str]
    excuse: str = ""  # "asks": a question about the phenomenon does not fire it; "asks+ai": nor one
    #                   about AI systems; "research": only an explicit research framing excuses it


def normalize(text: str) -> str:
    """Lowercase, accents stripped, typographic quotes made plain, whitespace collapsed."""
    return " ".join(fold(text.replace("’", "'")).split())


def _rx(*alternatives: str) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{a})" for a in alternatives))


# A message that asks *about* attacks, safety or misuse rather than attempting them ...
_OPENING = r"(?:^|[¿?¡!.;:]\s*)"  # the start of the message or of a sentence
_ASKS_ABOUT = _rx(
    _OPENING + r"(que|q|what|o que|qu'est-ce|c'est quoi|cos'e|was) (es|son|is|are|e|sont|ist|significa|means?)\b",
    _OPENING + r"(explica\w*|explain|explique\w*|spiega\w*|erklar\w*)\b.{0,30}\b(ataques?|attacks?|jailbreaks?|"
    r"inyeccion\w*|injection\w*|tecnica|technique|como funciona|how)",
    r"\b(por que|porque|xq|why|pourquoi|perche|warum)\b.{0,60}\b(funciona\w*|works?|marche|funziona|"
    r"funktioniert|se niega\w*|no (me )?(lo )?(dice|responde|contesta)|refuses?)\b",
    r"\b(como|how|comment|come|wie) (se |do |can |to )?(defiende|protej\w*|protege\w*|evit\w*|detect\w*|"
    r"previene|"
    r"prevenir|mitig\w*|defend\w*|protect\w*|prevent\w*|stop)\b",
    r"\b(red teaming|guardrails?|salvaguardas?)\b",
    r"\b(es|is it|seria|would it be|est-ce|c'est|e|sarebbe|ist es)\s+(etico|ethical|ethique|etica|legal|plagio|"
    r"plagiarism|plagiat|trampa|cheating|tricher|batota|betrug)\b",
)
# ... or that is about AI systems themselves ("¿por qué ChatGPT no explica cómo hacer armas?").
_AI_TOPIC = _rx(
    r"\b(llms?|chatgpt|chatbots?|modelos? de lenguaje|language models?|la ia|una ia|an ai|ai models?|nlp|pln|"
    r"moderacion|moderation|filtros? de contenido|clasificador\w*|classifier\w*|dataset|detector\w*)\b",
)
# Self-harm is excused only by an explicit research framing: a student in distress may well mention
# ChatGPT or ask "how do I stop", and must still get the caring reply.
_RESEARCH = _rx(r"\b(detect\w*|clasificador\w*|classifier\w*|dataset|nlp|pln|moderacion|moderation|prevencion)\b")

_PRONOUN = (
    r"(tu|tus|your|ton|tes|teu|teus|tuas|sua|suas|seu|seus|il tuo|le tue|tuo|tue|dein|deine|deinen|el teu|"
    r"les teves|teves)"
)
# Issue 19: role-play (a late relative "who used to tell me how…", a persona without rules, a story's character
# explaining how…); asking (verb first, or with its pronoun) for fake news or reviews; classmates' marks, contacts.
# fmt: off
_PRETEND = (r"(finge|finja|fingi|haz de cuenta|hazte pasar|haz como si|pretend|act as|actua como|imagin[ae]|"
    r"fais semblant|fais comme si|joue le role|faz de conta|fes veure|fes com si|fai finta|tu so,? als|"
    r"stell dir vor)")
_DEAD = r"(muert[oa]|fallecid[oa]|difunt[oa]|que ya no esta|late|dead|deceased|falecid[oa]|mort[oa]?|verstorben\w*)"
_RELATIVE = (r"(abuel\w*|grand[mp]\w*|grandad|granny|grand-[mp]ere|avo|avos|avi|avia|nonn[oa]|oma|opa|tio|tia|uncle|"
    r"aunt|tante|onkel|zio|zia)")
_USED_TO_TELL = (r"(contaba|explicaba|leia|decia|ensenaba|used to|would (tell|read)|me contava|me explicava|me lia|"
    r"racontait|expliquait|lisait|raccontava|spiegava|leggeva|m'explicava|em llegia|explicava|(erklart|erzahlt|"
    r"vorgelesen) hat|erklarte|erzahlte)")
_YOU_ARE = r"(eres|seras|you are|you'?re|you will be|tu es|tu seras|sei|sarai|ets|du bist|bist du|voce e|agora es)"
_NO_RULES = (r"(sin|with no|without|no|sans|sem|senza|ohne|sense|que no)\b.{0,30}\b(normas?|reglas?|limites?|"
    r"limits?|restricci\w*|restriction\w*|filtros?|filters?|censura|censorship|guidelines|rules|regras|restricoes|"
    r"regles|normes|regole|limiti|restrizioni|filtri|regeln|grenzen|einschrankungen|escrupulos)")
_STORY = (r"(historia|relato|cuento|novela|guion|escena|story|novel|screenplay|script|fiction\w*|histoire|roman|"
    r"recit|conto|romance|guiao|conte|racconto|storia|romanzo|sceneggiatura|geschichte|drehbuch|erzahlung)")
_CHARACTER = (r"(personaje|protagonista|villano|heroe|character|villain|hero|protagonist|personnage|heros|mechant|"
    r"personagem|vilao|personatge|heroi|personaggio|cattivo|eroe|figur|bosewicht|held)")
_EXPLAINS_HOW = (r"(explica|describe|ensena|detalla|explain|teach|show|explique|decrit|montre|ensina|mostra|ensenya|"
    r"spiega|descrive|insegna|erklart|beschreibt|zeigt)\w*\b.{0,40}\b(como|how|comment|come|wie|com)\b.{0,25}\b(fabric|"
    r"constru|build|make|hace|hacer|faz|fer|faire|sintetiz|synthes|cocin|cook|hack|pirat|robar|steal|entrar|break|forz|"
    r"crack|knack|voler|rubare|roubar|herstell|bauen|stehl|montar|envenen|poison|matar|kill|evad|bypass|falsific)\w*")
_ASK_TO = (r"(?:(?:^|[¿?¡!.;:,]\s*)(?:(?:porfa|por favor|please|pls|oye|hey|ahora|now|bitte|s'il te plait|"
    r"per favore|si us plau|puedes|podrias|me puedes|quiero que|necesito que|can you|could you|would you|i (want|"
    r"need) you to|tu peux|peux-tu|pourrais-tu|podes|voce pode|puoi|potresti|kannst du|pots|"
    r"podries)\s+)?(?:me\s+)?(?:escribe|escribas|redacta|redactes|genera|generes|crea|crees|inventa|inventes|haz|"
    r"hagas|fabrica|dame|write|generate|create|make|produce|mass[- ]produce|churn out|draft|give me|come up with|"
    r"ecris|redige|genere|cree|invente|fais|donne|escreve|escreva|gera|gere|cria|crie|faz|faca|escriu|fes|scrivi|"
    r"redigi|fai|schreibe?|erstellen?|generiere|verfasse|erfinde|mach|gib)|\b(?:escribeme|generame|creame|hazme|"
    r"inventate|inventame|redactame|fabricame|write me|make me|ecris-moi|fais-moi|escreve-me|cria-me|faz-me|gera-me|"
    r"escriu-me|fes-me|genera'm|crea'm|inventa't|scrivimi|creami|generami|fammi|inventami|schreib mir|erstell mir|"
    r"mach mir))\b")
_FAKE = (r"(noticias? (falsas?|inventadas?)|bulos?|fake[- ]?news|fake (articles?|stor(y|ies)|reviews?|testimonials?|"
    r"posts?|tweets?|accounts?|profiles?|press release|comments?)|false (news|stor(y|ies)|reviews?)|"
    r"made[- ]up (news|stor(y|ies)|reviews?|statistics|data)|propaganda (politica|electoral|sobre|contra|a favor|"
    r"about|against|for|with|con|avec|com|amb|mit|fur|uber)|campa\w* de desinformac\w*|disinformation campaign|"
    r"resenas? (falsas?|inventadas?)|(opiniones|valoraciones) (falsas|inventadas)|(comentarios|testimonios) (falsos|"
    r"inventados)|perfiles falsos|cuentas falsas|comunicado falso|articulo (falso|inventado)|"
    r"estadisticas inventadas|datos (falsos|inventados)|fausses? (nouvelles|infos?|informations|critiques)|"
    r"faux (avis|articles?|comptes|profils|communique|temoignages)|chiffres inventes|avaliacoes falsas|"
    r"perfis falsos|contas falsas|dados inventados|noticies falses|ressenyes falses|comptes falsos|dades inventades|"
    r"notizie? false?|recensioni false|account falsi|profili (falsi|finti)|statistiche inventate|falschmeldung\w*|"
    r"fake-accounts?|gefalscht\w* \w*(bewertung|nachricht|artikel|profil)\w*|erfundene\w* (zahlen|nachrichten|"
    r"artikel))")
_GRADE = r"(notas?|calificacion\w*|grades?|marks?|scores?|notes?|voti|voto|noten)"
_PEER = (r"(companer\w*|classmates?|companys?|companyes?|compagn\w*|camarades?|colegas?|kommiliton\w*|mitschuler\w*|"
    r"mitstudierend\w*|alumn\w*|estudiantes|students|etudiants?|alunos?|studenti|studentess\w*|studierend\w*|(de|of|"
    r"da|della|de la) (mi|my|ma|minha|mia|meva) (clase|class|classe|turma|promo|grupo|group|groupe|gruppo))")
_STAFF = r"(profesor\w*|profe|profa|teacher\w*|professor\w*|professeur\w*|prof|docente\w*|dozent\w*|lehrer\w*)"
_CONTACT = (r"(telefono|movil|whatsapp|email|e-mail|correo|mail|phone( number)?|cell|mobile|address|direccion|"
    r"domicilio|adresse|endereco|morada|indirizzo|adreca|telemovel|telefone|cellulare|handynummer|telefonnummer|"
    r"instagram|contacto|contact details)")
# fmt: on

_RULES_TEXT: tuple[tuple[str, str, tuple[str, ...], str], ...] = (
    (
        "self_harm",
        "first-person self-harm",
        (
            r"\b(suicidarme|suicidar-me|me suicidar|me suicider|suicidarmi|matarme|me matar|me tuer|"
            r"uccidermi|"
            r"ammazzarmi|mich umbringen|quitarme la vida|tirar minha (propria )?vida|treure'm la vida|"
            r"togliermi la vita|mir das leben nehmen|me quiero morir|quiero morir\w*|quero morrer|vull morir|"
            r"voglio morire|veux mourir|envie de mourir|will sterben|me quiero matar|acabar con mi vida|"
            r"no quiero (seguir )?vivi\w*|nao aguento mais viver|no vull viure|non voglio piu vivere|"
            r"will nicht mehr leben|hacerme dano|autolesion\w*|me ahorco|ahorcarme|tirarme (por|de|desde)|"
            r"en finir avec la vie|je pense a en finir)\b",
            r"\b(kill myself|killing myself|end my life|end(ing)? it all|want to die|wanna die|"
            r"don'?t want to live|hurt(ing)? myself|cut(ting)? myself|hang myself|suicidal|better off dead|"
            r"better off if i was dead|commit suicide)\b",
            r"\b(cortarme|me corto|me he cortado|me he vuelto a cortar)\b.{0,30}\b(brazos?|venas|munecas?|"
            r"piernas?|note|cuando|para sentir)",
            r"\b(forma|manera|metodo|way|method|jeito|maniere|modo)\b.{0,40}\b(suicid\w*|morir|morrer|mourir|"
            r"morire|to die)\b",
            r"\b(menos doloros[ao]|sin dolor|indolor[ao]|painless|least painful|moins douloureuse|"
            r"meno dolorosa|schmerzlos\w*)\b",
            r"\b(pastillas|paracetamol\w*|pills|tablets|medicaments|comprimidos|pillole|tabletten)\b.{0,40}"
            r"\b(sobredosis|overdose|no despertar\w*|ne plus se reveiller|overdose|uberdosis)",
            r"\b(sobredosis|overdose|uberdosis)\b.{0,40}\b(pastillas|paracetamol\w*|pills|tabletten)\b",
            r"\b(pensado|penso|pensando|pienso|pensamientos?|thinking|thoughts|pense)\b.{0,25}\bsuicid",
        ),
        "research",
    ),
    (
        "prompt_injection",
        "override the instructions",
        (
            r"\b(ignora\w*|olvida\w*|salta(te)?|omite|descarta|ignore\w*|disregard|forget|override|bypass|"
            r"esqueca|esquece|desconsidere|oublie\w*|oblida|dimentica|ignoriere\w*|vergiss|"
            r"missachte)\b.{0,40}"
            r"\b(instrucciones|reglas|normas|restricciones|indicaciones|directrices|instructions|rules|"
            r"guidelines|"
            r"restrictions|directives|programming|instrucoes|regras|restricoes|consignes|regles|instruccions|"
            r"normes|istruzioni|regole|restrizioni|anweisungen|regeln|vorgaben|einschrankungen)\b",
            r"\b(olvida|olvidate de|forget|oublie|esqueca|oblida|dimentica|vergiss)\b.{0,25}\b(el curso|"
            r"que eres|"
            r"tu rol|el personaje|the course|you are|your role|le cours|o curso|el curs|il corso)\b",
            r"\b(ya no eres|dejas de ser|deja de ser|you are no longer|you'?re no longer|stop being a tutor|"
            r"tu n'es plus|salte del personaje|sal del personaje|ignora tu rol)\b",
        ),
        "asks",
    ),
    (
        "prompt_injection",
        "reveal the hidden prompt",
        (
            rf"\b{_PRONOUN} (system ?prompt|prompt (de|del|di) sistema|prompt systeme|systemprompt|"
            r"prompt inicial|initial prompt|instrucciones (ocultas|secretas|iniciales|internas|originales)|"
            r"hidden (instructions|configuration|rules)|reglas (internas|secretas|ocultas)|"
            r"configuracion (interna|oculta)|instructions (cachees|secretes|initiales))",
            r"\b(muestra\w*|ensena\w*|revela\w*|imprime|copia\w*|escribe|dime|deletrea|print|reveal|show|"
            r"output|"
            r"affiche|mostra\w*|zeig\w*)\b.{0,30}\b(system ?prompt|prompt (de|del|di) sistema|"
            r"prompt systeme)",
            r"\b(repite|repeat|repete|ripeti|wiederhole|repita)\b.{0,30}\b(texto|text|todo|everything|"
            r"lo que hay|"
            r"instrucciones|instructions|instrucoes)\b.{0,30}\b(encima|above|antes|before|anterior\w*|avant|"
            r"prima)",
            r"\b(traduce|translate|traduis|traduza|tradueix|traduci|ubersetze)\b.{0,20}\b"
            rf"{_PRONOUN} (instrucciones|instructions|consignes|instrucoes|instruccions|istruzioni|"
            rf"anweisungen|"
            r"reglas|rules|prompt)",
        ),
        "asks",
    ),
    (
        "prompt_injection",
        "jailbreak mode or persona",
        (
            r"\b(modo|mode|modalita|modus)\s+(desarrollador|developer|desenvolvedor|developpeur|"
            r"desenvolupador|"
            r"sviluppatore|dios|god|sin censura|sin filtros|jailbreak|dan|sudo)\b",
            r"\b(entwicklermodus|do anything now|jailbreak mode)\b",
            r"\b(eres|you are|you'?re|tu es|sei|ets|voce e|du bist)\s+(ahora\s+|now\s+|maintenant\s+|ora\s+|"
            r"ara\s+|jetzt\s+|agora\s+)?(dan)\b",
            r"\b(actua|act|agisci|actue)\s+(como|as|comme|come)\s+dan\b",
            r"\b(responde\w*|contesta\w*|answer|respond|reponds|responda|rispondi|antworte|habla\w*)\b.{0,30}"
            r"\b(sin|without|sans|sem|senza|ohne)\s+(ningun\w*\s+|any\s+|aucun\w*\s+|nenhum\w*\s+)?"
            r"(filtros?|restricciones|censura|limites|reglas|restrictions|filters?|rules|guidelines|"
            r"censorship|"
            r"regles|filtres|regras|restricoes|filtro|regole|filtri|einschrankungen|regeln)\b",
            r"\b(finge|imagina|haz como|pretend|imagine|act as if|fais comme si|finja|fingi)\b.{0,40}"
            r"\b(sin|no tienes|without|no|sans|sem|senza|ohne)\b.{0,15}\b(reglas|restricciones|normas|"
            r"filtros|"
            r"limites|rules|restrictions|filters|guidelines|limits|regras|regles)\b",
            r"\b(desactiva\w*|quita\w*|disable|remove|turn off|elimina\w*)\b.{0,30}\b(filtros?|moderacion|"
            r"restricciones|censura|limites|filters?|moderation|restrictions|safety)\b",
            r"\b(abuela|grandma|grandmother|avo|grand-mere|nonna|oma)\b.{0,80}\b(napalm|prompt|instrucciones|"
            r"instructions|contrasena|password|clave de windows|windows key)",
        ),
        "asks",
    ),
    (
        "prompt_injection",
        "role-play framing",
        (
            rf"^(?=.*\b({_PRETEND}|{_DEAD})\b).*\b{_RELATIVE}\b.{{0,100}}\b{_USED_TO_TELL}\b",
            rf"\b{_YOU_ARE}\b.{{0,50}}\b(ia|ai|modelo|model|asistente|assistant|chatbot|bot|ki|personaje|character|"
            rf"personnage|personaggio|hacker|version)\b.{{0,40}}\b{_NO_RULES}\b",
            rf"\b{_STORY}\b.{{0,100}}\b{_CHARACTER}\b.{{0,80}}\b{_EXPLAINS_HOW}\b",
        ),
        "asks",
    ),
    (
        "prompt_injection",
        "injected system markup",
        (
            r"</?\s*(system|sistema|user|usuario|instructions|fin_de_pregunta|pregunta)\s*>",
            r"#{2,}\s*(system|sistema)\b",
            r"\b(nuevas instrucciones|new instructions|system override|nouvelles instructions|"
            r"neue anweisungen|"
            r"novas instrucoes|noves instruccions|nuove istruzioni)\b",
            r"\b(base64|hex|hexadecimal|rot13)\b.{0,80}\b(obedece\w*|haz lo que|ejecuta\w*|follow|obey|"
            r"do what|"
            r"sigue\w*|execute|siga|fais ce|esegui)",
            r"\b(decodifica|decode|decodifique|decode)\b.{0,20}\b(y|and|et|e)\b.{0,20}\b(obedece\w*|haz|"
            r"ejecuta|"
            r"follow|obey|do|faz|fais)\b",
        ),
        "",
    ),
    (
        "harm",
        "weapons, explosives, drugs, malware",
        (
            r"\b(bombas?|explosiv\w*|molotov|napalm|bombs?|pipe bomb|metanfetamina|meth|fentanilo|fentanyl|"
            r"cocaina|heroina|ghost gun|arma casera|pistola casera|armas? impresas?|3d[- ]printed gun|"
            r"silenciador|silencer|ransomware|keylogger|untraceable gun|gun that can'?t be traced)\b.{0,60}"
            r"|\b(fabric\w*|hacer|hago|haz|make|build|construir|construyo|sintetiz\w*|cocinar|cocino|cook\w*|"
            r"escribe\w*|write|fazer|faco|fabriquer|costruisc\w*|bauen?|baue)\b.{0,40}\b(bombas?|explosiv\w*|"
            r"molotov|napalm|bombs?|metanfetamina|meth|fentanilo|fentanyl|ransomware|keylogger|malware|"
            r"silenciador|silencer|bombe|bomba|phishing)\b",
            r"\b(drogar|drug|hacer(le)? dano|hago dano|hurt|lastimar)\s+(a alguien|someone|somebody)\b",
            r"\b(dni falso|pasaporte falso|fake (passport|id)|billetes falsos|falsific\w* (billetes|dinero|"
            r"dni))",
            r"\b(envenenar|poison|envenenar|empoisonner|avvelenare|vergiften)\b.{0,20}\b(a alguien|someone|a "
            r"mi|my|quelqu'un|alguem|qualcuno|jemanden)",
            r"\b(hackear|hackeo|piratear|pirater|hack|hackerare|hacke|piratejar)\b.{0,30}\b(wifi|cuenta|"
            r"account|"
            r"email|correo|compte|instagram|facebook|conta|konto)\b",
        ),
        "asks+ai",
    ),
    (
        "cheating",
        "doing an assessment for the student",
        (
            r"\bhaz(me)?\s+(tu\s+)?(el|mi)\s+(examen|parcial|test evaluable|cuestionario evaluable|tfm|tfg|"
            r"trabajo final|practica \d|entrega)\b(?!\s+de\s+(practica|prueba|repaso))",
            r"\b(estoy|estamos)\s+(haciendo|en|en mitad de|en medio de)\s+(el|un|mi)?\s*(examen|parcial)\b"
            r"(?!\s+de\s+(practica|prueba))",
            r"\b(respuestas|soluciones|solucionario)\s+(del|de mi|de el)\s+(examen|parcial|test evaluable|"
            r"cuestionario evaluable)",
            r"\b(examen|parcial)\b.{0,30}\bpor mi\b",
            r"\b(entregarlo|entregar\w*|presentarlo)\s+como\s+mio\b",
            r"\bque no se note que (es|lo ha hecho|lo hizo|esta hecho) (de |con |por |una |la )?(ia|chatgpt)",
            r"\b(turnitin|antiplagio|detector de (ia|plagio)|ai detector|plagiarism checker|anti-plagiat)\b",
            r"\b(do|take|write)\s+(my|the)\s+(final\s+)?(exam|test|quiz|essay|assignment|homework)\b.{0,20}"
            r"\bfor me\b",
            r"\b(answer key|answers (to|for) (the|my|tomorrow'?s?) (exam|test|quiz))",
            r"\b(i'?m|i am)\s+(taking|in|doing|in the middle of)\s+(the|my|an|a)?\s*(online\s+)?(exam|test|"
            r"quiz)",
            r"\bcheat\w*\s+(on|in)\s+(an?|the|my)?\s*(online\s+|proctored\s+)*(exam|test|quiz)",
            r"\b(submit (it )?as (mine|my own)|can'?t tell it'?s ai)\b",
            r"\b(faz a minha prova|fais mon examen|fes-me l'examen|fammi tu l'esame|schreib meine prufung|"
            r"je suis en plein examen|estou no meio do (exame|prova)|estic fent l'examen|sto facendo l'esame|"
            r"gerade in der (klausur|prufung))",
            r"\b(entreg|present|subo|hand|turn|submit|rend|remet|lliur|consegn|abgeb|geb|einreich|"
            r"firm)\w*\b.{0,50}\b(como (si fuera |se fosse )?(mio|mia|propi[oa]|nuestro|meu|minha)|(con|a) mi nombre|"
            r"as (mine|my own|ours|our own)|under my name|comme (le mien|la mienne)|sous mon nom|com o meu nome|"
            r"com (si fos |a )(meu|meva)|amb el meu nom|come (mio|mia|se fosse mio)|a mio nome|col mio nome|"
            r"als (meine?n?) eigene\w*|unter meinem namen)",
            r"\b(write|do|solve|complete|finish)\s+(my|the|our)\s+((whole|entire|graded|take[- ]home)\s+)+(\w+\s+)?"
            r"(exam|test|quiz|essay|assignment|homework|report|paper|coursework|project|thesis|dissertation)",
        ),
        "asks",
    ),
    (
        "personal_data",
        "someone's private contact data",
        (
            r"\b(direccion de casa|domicilio|home address|donde vive|where .{1,30} lives|onde mora|"
            r"adresse de|"
            r"indirizzo di casa|adreca de casa)\b",
            r"\b(telefono|movil|phone number|numero de (telefono|movil)|personal phone|numero de portable|"
            r"telefone|numero di telefono|handynummer|telefonnummer)\b.{0,30}\b(de mi|del profe\w*|de la "
            r"profe\w*|of my|my|de mon|do meu|da minha|della mia|del mio|meiner|meines)\b",
            r"\b(dni|social security number|numero de la seguridad social) (de|of)\b",
            r"\b(contrasena|password|senha) (del|de la|de mi|of my|da minha|do meu)\s+(email|correo|cuenta|"
            r"instagram|novi\w*|ex|account|namorad\w*)",
            r"\b(rastrea\w*|localiza\w*|track|localise|rastreia)\b.{0,30}\b(movil|telefono|phone|ubicacion|"
            r"location|telephone)\b",
            rf"\b{_GRADE}\s+(de|del|of|d'|des|da|do|dos|das|di|della|dei|delle|von|der|meiner|aller|dels)\b.{{0,25}}"
            rf"\b{_PEER}\b",
            rf"\b(que|cuanto|what|which|quelle|quel|qual|quanto|quin|quina|che|welche)\s+{_GRADE}\b.{{0,60}}\b{_PEER}\b",
            rf"\b{_CONTACT}\s+(personal\w*\s+|privad\w*\s+|private\s+|de casa\s+)?(de|del|of|d'|da|do|di|della|dello|"
            rf"von|der|des|meiner|meines|unserer|unseres|de la|dels)\b.{{0,25}}\b({_PEER}|{_STAFF})\b",
        ),
        "asks+ai",
    ),
    (
        "disinformation",
        "fake news, fake reviews, propaganda, fake voices",
        (
            rf"{_ASK_TO}.{{0,80}}\b{_FAKE}",
            r"\b(para que parezca|para parecer|so (that )?it (looks|seems)|to make it (look|seem)|pour faire croire|"
            r"pra parecer|per far sembrare|damit es (so )?aussieht|perque sembli)\b.{0,20}\b(que )?(mucha gente|"
            r"todo el|lots of|many people|everyone|the whole|tout le monde|beaucoup|muita gente|tutti|molta gent|alle)",
        ),
        "asks+ai",
    ),
    (
        "harassment",
        "humiliating or hateful text",
        (
            r"\b(escribe\w*|redacta\w*|dame|dime|haz\w*|genera|write|give me|make|help me|ecris|donne-moi|"
            r"escreve|me da|escriu|scrivi|dammi|schreib|gib mir|insulta)\b.{0,40}\b(humill\w*|insult\w*|"
            r"ridiculiz\w*|acos\w*|amenaz\w*|burl\w*|humiliat\w*|threaten\w*|harass\w*|bully\w*|humili\w*|"
            r"menace|insultos?|umili\w*|insulti|beleidigung\w*|fertigzumachen|fertigmachen|mean|cruel\w*)",
            r"\b(mensaje|discurso|tweet|texto|post|comentarios?|chistes?|broma|jokes?|messages?|speech|"
            r"comments?|"
            r"piada|blague|acudit|battuta|witz)\b.{0,20}\b(de odio|racista|machista|homofob\w*|xenofob\w*|"
            r"hate|"
            r"hateful|racist|sexist|homophobic|haineux|raciste|odio|odio contra)\b",
        ),
        "asks+ai",
    ),
)

RULES: tuple[Rule, ...] = tuple(
    Rule(reason, name, _rx(*patterns), excuse) for reason, name, patterns, excuse in _RULES_TEXT
)

_CHAT_WORDS = frozenset(
    """hola holaa holi buenas buenos dias tardes noches gracias muchas mil ok okay okey vale perfecto genial
    guay adios hasta luego manana pronto chao jaja jajaja jajajaja jeje que tal como estas muy bien y tu
    entendido de nada saludos un saludo tutor profe crack hi hello hey there thanks thank you so much a lot
    bye cheers good morning evening night great cool got it nice perfect oi ola bom dia boa tarde obrigado
    obrigada valeu tchau tudo bem salut bonjour merci beaucoup au revoir bonsoir ca va bon moltes gracies
    adeu fins despres ciao buongiorno grazie arrivederci hallo guten tag danke vielen dank tschuss see later
    soon super top lol""".split()
)


def find_rule(text: str) -> Rule | None:
    """The first rule that fires on the message, or None. `text` may be raw: it is normalized here."""
    norm = normalize(text)
    asks = _ASKS_ABOUT.search(norm) is not None
    excused = {
        "": False,
        "asks": asks,
        "asks+ai": asks or _AI_TOPIC.search(norm) is not None,
        "research": _RESEARCH.search(norm) is not None,
    }
    for rule in RULES:
        if not excused[rule.excuse] and rule.pattern.search(norm):
            return rule
    return None


_THANKS = re.compile(r"\b(gracias|thanks|thank you|thx|merci|obrigad[oa]|valeu|gracies|grazie|danke)\b")


def says_thanks(text: str) -> bool:
    """True when the message thanks the tutor ("gracias, ahora lo entiendo"): not a follow-up question."""
    return _THANKS.search(normalize(text)) is not None


def is_chitchat(text: str) -> bool:
    """True for a message made only of greetings, thanks and courtesy words ("hola!", "ok gracias")."""
    words = re.findall(r"[^\W\d_]+", normalize(text))
    return bool(words) and len(words) <= 8 and all(w in _CHAT_WORDS for w in words)
