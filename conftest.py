"""pytest configuration shared by the unit tests and nbval.

nbval compares the outputs of cells marked ``# NBVAL_CHECK_OUTPUT`` (we run it with
``--nbval-lax``); stderr (warnings, progress bars) is never compared.
"""
import os

os.environ.setdefault("DDCS_MI_HEADLESS", "1")

try:
    import nbval.plugin as _nbval

    _init = _nbval.IPyNbFile.__init__

    def _init_skip_stderr(self, *args, **kwargs):
        _init(self, *args, **kwargs)
        self.skip_compare = tuple(self.skip_compare) + ("stderr",)

    _nbval.IPyNbFile.__init__ = _init_skip_stderr
except ImportError:  # nbval is only needed for the notebook checks
    pass
