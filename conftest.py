"""pytest configuration shared by the unit tests and nbval.

The environment of the notebook kernels (and of this process, before torch is imported) is
the runner's: ``lib.paths.set_kernel_environment`` (no progress bars, a fixed hash seed, the
CPU kernels pinned as in a run; docs/protocol.md says how far that makes machines agree).
nbval compares the outputs of cells marked ``# NBVAL_CHECK_OUTPUT`` (we run it with
``--nbval-lax``); stderr (warnings, progress bars) is never compared. An nbval session holds
the notebooks' shared folders (``lib.run.context.interactive_lock``), so it and a
``make golden`` never rebuild ``runs/interactive/smoke`` at the same time.
"""
import contextlib

import pytest

from lib import paths

paths.set_kernel_environment()

try:
    import nbval.plugin as _nbval

    _init = _nbval.IPyNbFile.__init__

    def _init_skip_stderr(self, *args, **kwargs):
        _init(self, *args, **kwargs)
        self.skip_compare = tuple(self.skip_compare) + ("stderr",)

    _nbval.IPyNbFile.__init__ = _init_skip_stderr
except ImportError:  # nbval is only needed for the notebook checks
    pass


def pytest_configure(config):
    """Take the shared folders' lock for an nbval session (refused cleanly when it is held)."""
    if not (getattr(config.option, "nbval", False) or getattr(config.option, "nbval_lax", False)):
        return
    from lib.errors import RunnerError
    from lib.run.context import interactive_lock

    stack = contextlib.ExitStack()
    try:
        stack.enter_context(interactive_lock("an nbval session"))
    except RunnerError as err:
        pytest.exit(str(err), returncode=2)
    config.add_cleanup(stack.close)
