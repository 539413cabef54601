__version__ = "0.1.0"

def __getattr__(name):
    "`balance_nb.diagnose(model, loader, ...)`: the function of `balance_nb.diagnosis`, imported on first use (sklearn, matplotlib)."
    if name == 'diagnose':
        from .diagnosis import diagnose
        return diagnose
    raise AttributeError(f"module 'balance_nb' has no attribute {name!r}")
