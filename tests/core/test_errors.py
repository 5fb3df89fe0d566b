"""One error hierarchy: every error class of the package derives from VisionportsError and is defined once."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import visionports
from visionports.core import errors


def _package_modules():
    for info in pkgutil.walk_packages(visionports.__path__, "visionports."):
        if not info.name.endswith("__main__"):
            yield importlib.import_module(info.name)


def test_every_package_error_is_a_visionports_error_defined_in_one_place() -> None:
    found = {}
    for module in _package_modules():
        for name, obj in vars(module).items():
            is_error = inspect.isclass(obj) and issubclass(obj, Exception) and not issubclass(obj, Warning)
            if is_error and obj.__module__.startswith("visionports"):
                found.setdefault(name, set()).add(obj)
    assert found, "no package errors found"
    for name, classes in found.items():
        assert len(classes) == 1, f"{name} is defined more than once: {classes}"
        (cls,) = classes
        assert issubclass(cls, errors.VisionportsError), name
    expected = {
        "CheckpointError",
        "ImageInputError",
        "CocoFormatError",
        "ModelFolderError",
        "OutputFolderError",
    }
    assert expected <= set(found)
