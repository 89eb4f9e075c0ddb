"""SSL methods: the registry and one module per built-in method (importing this package registers them)."""
from methods import ae, barlowtwins, byol, moco, simclr, simsiam, vicreg  # noqa: F401  (registration)
from methods.base import SSLMethod
from methods.registry import available_methods, get_method, register_method

__all__ = ["SSLMethod", "available_methods", "get_method", "register_method"]
