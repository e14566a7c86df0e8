"""The ExecuTorch runtime's Python bindings, imported without the exporter.

``executorch.runtime`` and ``executorch.extension.pybindings.portable_lib`` import
``executorch.exir`` (for one warning class), and with it ``torch._dynamo``, ``torch._inductor`` and
torchao: about 135 MB of resident memory and 4 s of start-up that running a ``.pte`` never uses.
The compiled extension they wrap (``executorch.extension.pybindings._C``) needs only libtorch, so a
streaming process imports torch and then that extension directly, and falls back to
``portable_lib`` where a wheel lays the extension out differently.
"""

from __future__ import annotations

import functools
from types import ModuleType

from streamer.errors import missing_dependency


@functools.lru_cache(maxsize=1)
def bindings() -> ModuleType:
    """The runtime's bindings module (``_load_program``, ``ExecuTorchMethod``, ``Verification``, ...).

    Raises:
        MissingDependencyError: executorch is not installed (with the install hint).
    """
    import torch  # noqa: F401  (loads libtorch, which the extension links against)

    try:
        from executorch.extension.pybindings import _C
    except ImportError:
        try:
            from executorch.extension.pybindings import portable_lib as _C
        except ImportError as e:
            raise missing_dependency("executorch", "export", "running an ExecuTorch program") from e
    return _C


def load_program(path: str, etdump: bool = False) -> object:
    """Loads the program at ``path`` (memory-mapped), fully verified.

    Returns:
        The bindings' ``ExecuTorchProgram``: ``load_method(name)`` gives an ``ExecuTorchMethod``,
        called as ``m(inputs, clone_outputs=...)``; ``method_meta(name)`` describes its inputs. Keep
        the program referenced while its methods run.
    """
    b = bindings()
    return b._load_program(str(path), enable_etdump=etdump, program_verification=b.Verification.InternalConsistency)
