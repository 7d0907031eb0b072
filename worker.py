"""Run PagePerfect workers: `python worker.py [--queues crawl,ai]`.

One Worker per task queue kind it serves (all by default), read off the stage
table; several such processes on several machines share the work. The workers are
built in pageperfect.runtime.worker; this script only starts them.
"""

from pageperfect.runtime.worker import cli

if __name__ == "__main__":
    cli()
