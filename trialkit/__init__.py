"""What every layer above the bottom shares about running a trial, importing nothing of ours:
the error root (errors.py), trial statuses (status.py), the hypertune metric file, the early
stopping rules, TensorFlow's start-up noise, the gs:// layout, and Open Source Vizier's designer.

Both backends/ and the Vertex emulator (vertex_emulator/) build on it; neither sees the other.
"""
