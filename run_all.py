#!/usr/bin/env python
"""Run the notebooks headlessly: python run_all.py --profile {smoke,cpu,paper} [--resume RUN_DIR].

A thin command line over lib/run/runner.py; `python run_all.py --help` lists the options.
"""
import sys

from lib.run.runner import main

if __name__ == "__main__":
    sys.exit(main())
