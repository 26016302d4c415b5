"""load(path, name): imports the Python file `path` as the module `name` (registered in sys.modules first, so the
file's own imports of `name` resolve to it). The fixture scripts load LLaVA's eval code this way, without its package."""
import importlib.util
import sys


def load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod
