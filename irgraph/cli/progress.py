"""Progress on the command line: one bar on stderr, for every long step of every verb.

    with progress.reporter() as report:             # report(done, total, what="")
        compile_graph(graph, out, progress=report)  # library code calls it as it goes

    bar = progress.bar(total=steps, unit="step")    # a tqdm, for a loop the CLI owns

Library code reports `progress(done, total, what)` (`irgraph.progress`) and never
draws. Here the reports become a single line that shows the latest one: its step
(`what`), done/total, the time spent in it and its rate. Nested reports (a pass
pipeline, one pass's layers, one layer's calibration batches) take the line in
turn. While a step runs, the line's clock keeps ticking, so that a long single
unit (`tvm.compile`) is seen to be alive.

Nothing is drawn when stderr is not a terminal (a log, a pipe, a test) or when
`irgraph --quiet` was given: then every call is a no-op and output stays as it was.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_quiet = False
TICK = 0.5  # seconds between redraws of a step that reports nothing new


def set_quiet(quiet: bool) -> None:
    """`irgraph --quiet`: draw no progress for the rest of this process."""
    global _quiet
    _quiet = quiet


def drawing() -> bool:
    """Whether progress is drawn: stderr is a terminal and --quiet was not given."""
    if _quiet:
        return False
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stderr
        return False


def bar(draw: bool = True, **options: Any) -> Any:
    """A tqdm on stderr (`total`, `desc`, `unit`, ...), disabled unless `draw` and `drawing()`."""
    from tqdm import tqdm

    return tqdm(
        file=sys.stderr,
        leave=False,
        dynamic_ncols=True,
        disable=not (draw and drawing()),
        **options,
    )


def note(message: str) -> None:
    """A line on stderr that does not tear a progress line drawn there (tqdm clears and redraws
    it around the message)."""
    if drawing():
        from tqdm import tqdm

        tqdm.write(message, file=sys.stderr)
    else:
        print(message, file=sys.stderr, flush=True)


class Reporter:
    """progress(done, total, what) as one tqdm line; a step that changes `what` restarts it."""

    def __init__(self) -> None:
        self.bar: Any = None
        self.what: str | None = None
        self.drawn = 0.0
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.ticker: threading.Thread | None = None

    def __call__(self, done: int, total: int, what: str = "") -> None:
        if not drawing():
            return
        with self.lock:
            if self.bar is None:
                self.bar = bar(total=total, desc=what)
                self.ticker = threading.Thread(target=self._tick, daemon=True)
                self.ticker.start()
            elif what != self.what:  # a new step: its own clock and rate, from `done` on
                self.bar.set_description_str(what, refresh=False)
                self.bar.initial = self.bar.last_print_n = done
                self.bar.start_t = self.bar.last_print_t = self.bar._time()
                self.drawn = 0.0  # show the new step at once
            self.what = what
            self.bar.total = total
            self.bar.n = done
            now = time.monotonic()
            if done >= total or now - self.drawn >= 0.1:  # at most ten redraws a second
                self.bar.refresh()
                self.drawn = now

    def _tick(self) -> None:
        while not self.stop.wait(TICK):
            with self.lock:
                if self.bar is not None and time.monotonic() - self.drawn >= TICK:
                    self.bar.refresh()
                    self.drawn = time.monotonic()

    def close(self) -> None:
        self.stop.set()
        if self.ticker is not None:
            self.ticker.join()
        with self.lock:
            if self.bar is not None:
                self.bar.close()
                self.bar = None


@contextmanager
def reporter() -> Iterator[Reporter]:
    """A Reporter whose line is cleared when the block ends, however it ends."""
    report = Reporter()
    try:
        yield report
    finally:
        report.close()
