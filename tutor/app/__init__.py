"""The browser app around the tutor: the chat page, the instructor panel, and what they keep on disk.

`ui.py` builds the Gradio page (never launches it), `instructor.py` the password-protected tab,
`store.py` the local SQLite of feedback and analytics, `lock.py` one writer per data folder, and
`heap.py` the malloc-arena cap `tutor serve` sets. It answers nothing itself: `tutor.pipeline` does.
"""
