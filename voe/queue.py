"""`python voe/queue.py`: the original's command for the master; the same as `voe master`.

Run as a script, Python puts this file's folder first on ``sys.path``, where this
very file would shadow the standard library's ``queue`` (which gevent, urllib3 and
others import). So the script takes its folder off the path, and puts the project
root on it, before importing anything else.
"""

if __name__ == "__main__":
    import os
    import sys

    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _here]
    sys.path.insert(0, os.path.dirname(_here))
    sys.modules.pop("queue", None)

    from voe.cli.main import main

    sys.exit(main(["master", *sys.argv[1:]]))
