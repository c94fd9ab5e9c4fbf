"""`python -m pipeline` in a checkout: the same command as `oneneuron-pipeline` (oneneuron/pipeline.py).

Not installed: an installed toolkit claims no top-level name but train, export, serve and oneneuron.
"""

from oneneuron.pipeline import main

if __name__ == "__main__":
    main()
