"""Loading model files as data: ``.keras`` archives only, read before Keras rebuilds anything.

A ``.keras`` file is a zip of ``config.json`` (the layer graph, as names of classes and
functions) and ``model.weights.h5``. Keras rebuilds the graph by importing what the config names,
so a crafted config runs code: a ``Lambda`` layer carries Python (marshalled bytecode, or the name
of any function), and published advisories showed configs naming functions outside Keras slipping
past ``safe_mode`` (CVE-2025-1550, CVE-2025-8747, CVE-2025-9906). Legacy ``.h5`` files ignore
``safe_mode`` altogether (CVE-2025-9905). So, before Keras reads the file:

- only ``.keras`` archives are accepted, within a total uncompressed size and member count
  (Keras unpacks the archive to a temporary folder, so the cap comes first), and their
  ``config.json`` must be readable JSON;
- every object the config names (a layer, its activation, initialisers, regularisers, the loss,
  the optimizer: every field Keras turns into a callable) is resolved, without importing anything,
  to what Keras would build and must be on one allow-list: a Keras *modelling* class (a layer,
  initialiser, regulariser, constraint, loss, metric, optimizer, schedule or dtype policy), a
  function of a Keras modelling namespace (:data:`FUNCTION_MODULES`), or one of segnet-tf's
  registered classes (``segnet_tf>...``). So ``keras.utils.plot_model`` written as a class is
  refused like ``os.system``; Python lambdas and the Keras layers that run code or read other
  files (``Lambda``, ``TFSMLayer``, the torch/JAX wrappers, vocabulary lookups) are refused by
  name;

then Keras loads it with ``safe_mode=True``, at a version carrying those advisories' fixes
(``keras>=3.14`` in ``pyproject.toml``), and the result must be a segmentation network: one
``(batch, H, W, 3)`` image input and one ``(batch, H, W, classes)`` output.

A user who trusts a file that needs more opts in with :func:`unsafe_loading` (the CLI's
``--unsafe-load``); the archive format and the segmentation check still apply.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

import keras

import segnet_tf.layers  # noqa: F401  (registered: every segnet-tf model names them)
import segnet_tf.losses  # noqa: F401  (registered: a resumed checkpoint names the loss)
from segnet_tf.runs import MODEL_FILES

LOGGER = logging.getLogger(__name__)

OWN_PACKAGE = "segnet_tf"
# Keras classes that run code or read files named in the config, whatever safe_mode says.
REFUSED_CLASSES = {
    "Lambda": "runs arbitrary Python code",
    "TFSMLayer": "loads and runs another SavedModel",
    "TorchModuleWrapper": "unpickles a PyTorch module",
    "JaxLayer": "runs arbitrary JAX code",
    "FlaxLayer": "runs arbitrary Flax code",
    "StringLookup": "reads a vocabulary file named in the model",
    "IntegerLookup": "reads a vocabulary file named in the model",
    "TextVectorization": "reads a vocabulary file named in the model",
}
# The one allow-list of what a config may name. Classes: Keras's modelling kinds (every Keras
# model, layer and training object a segnet-tf file holds derives from one of these).
MODELLING_BASES = (
    keras.layers.Layer,  # models too
    keras.initializers.Initializer,
    keras.regularizers.Regularizer,
    keras.constraints.Constraint,
    keras.losses.Loss,
    keras.metrics.Metric,
    keras.optimizers.Optimizer,
    keras.optimizers.schedules.LearningRateSchedule,
    keras.dtype_policies.DTypePolicy,
    keras.quantizers.Quantizer,
)
# Functions: those of Keras's namespaces of modelling functions ("builtins" is how Keras writes its
# built-in activations and losses by bare name; it searches BUILTIN_FUNCTION_MODULES for them).
FUNCTION_MODULES = (
    "keras.activations",
    "keras.constraints",
    "keras.initializers",
    "keras.losses",
    "keras.metrics",
    "keras.ops",
    "keras.regularizers",
)
BUILTIN_FUNCTION_MODULES = tuple(m for m in FUNCTION_MODULES if m != "keras.ops")
# Keras's own markers for values (tensors, arrays, slices), rebuilt without naming any code.
DATA_MARKERS = frozenset(
    {"__keras_tensor__", "__tensor__", "__numpy__", "__bytes__", "__ellipsis__", "__slice__"}
)
MAX_CONFIG_BYTES = 64 * 2**20  # our largest config is ~60 kB; a bigger one is not a model config
# Keras unpacks a .keras archive to a temporary folder and refuses only members over 256 MiB, so
# eight such members would write 2 GB: the whole archive is capped before Keras opens it. The full
# SegNet (29.4 M float32 weights) is ~120 MB; 1 GiB leaves room for wider or bigger models.
MAX_ARCHIVE_BYTES = 2**30
MAX_ARCHIVE_MEMBERS = 16  # Keras writes 3 (config.json, metadata.json, model.weights.h5)

_UNSAFE = contextvars.ContextVar("segnet_tf_unsafe_load", default=False)


class ModelFileError(ValueError):
    """A model file that is not a loadable segnet-tf model, or that would run code to load."""


@contextmanager
def unsafe_loading() -> Iterator[None]:
    """Inside this block, model files that need unsafe deserialisation (e.g. a ``Lambda`` layer)
    are loaded instead of refused: their code runs. Only for files you trust."""
    token = _UNSAFE.set(True)
    try:
        yield
    finally:
        _UNSAFE.reset(token)


def resolve_model_file(path: str | Path) -> Path:
    """``path`` itself, or the model of a run directory or shipped model folder."""
    path = Path(path)
    if path.is_dir():
        path = next((path / n for n in MODEL_FILES if (path / n).is_file()), path)
    if not path.is_file():
        raise FileNotFoundError(
            f"model {str(path)!r}: no such file (expected a .keras file, or a folder holding "
            f"{' or '.join(MODEL_FILES)})"
        )
    return path


def load_model(path: str | Path, compile: bool = False, unsafe: bool | None = None) -> keras.Model:
    """Load a segnet-tf ``.keras`` model (a file, a run directory or a shipped model folder)
    without running code from it; see the module docstring for what is checked.

    ``unsafe`` None follows :func:`unsafe_loading`.
    """
    path = resolve_model_file(path)
    unsafe = _UNSAFE.get() if unsafe is None else unsafe
    config = read_keras_config(path)
    if unsafe:
        LOGGER.warning("%s: unsafe loading, any code in the file runs", path)
    else:
        check_config_is_data(config, path)
    try:
        model = keras.models.load_model(path, compile=compile, safe_mode=not unsafe)
    except Exception as e:  # Keras raises anything from ValueError to h5py's OSError
        raise ModelFileError(f"model {str(path)!r}: not a loadable Keras model: {e}") from e
    check_segmentation_model(model, path)
    return model


def read_keras_config(path: Path) -> dict:
    """The ``config.json`` of a ``.keras`` archive, read without Keras."""
    suffix = path.suffix.lower()
    if suffix in (".h5", ".hdf5"):
        raise ModelFileError(
            f"model {str(path)!r}: a legacy HDF5 model, which can run code on load whatever "
            "safe_mode says; segnet-tf loads .keras files only (re-save a model you trust with "
            "model.save('name.keras'))"
        )
    if suffix != ".keras":
        raise ModelFileError(
            f"model {str(path)!r}: not a .keras file; segnet-tf loads .keras model archives only"
        )
    try:
        with zipfile.ZipFile(path) as archive:
            check_archive_size(archive.infolist(), path)
            info = archive.getinfo("config.json")
            if info.file_size > MAX_CONFIG_BYTES:
                raise ModelFileError(
                    f"model {str(path)!r}: config.json is {info.file_size} bytes, too large "
                    "for a model config"
                )
            config = json.loads(archive.read(info))
    except zipfile.BadZipFile as e:
        raise ModelFileError(
            f"model {str(path)!r}: not a .keras archive (truncated or corrupt zip: {e})"
        ) from e
    except KeyError as e:
        raise ModelFileError(f"model {str(path)!r}: .keras archive without config.json") from e
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise ModelFileError(f"model {str(path)!r}: config.json is not valid JSON: {e}") from e
    except (OSError, zipfile.LargeZipFile, NotImplementedError) as e:  # CRC, compression
        raise ModelFileError(f"model {str(path)!r}: unreadable .keras archive: {e}") from e
    if not isinstance(config, dict) or "class_name" not in config:
        raise ModelFileError(f"model {str(path)!r}: config.json does not describe a model")
    return config


def check_archive_size(members: list[zipfile.ZipInfo], path: Path) -> None:
    """Refuse an archive that would unpack to more than :data:`MAX_ARCHIVE_BYTES` or holds more
    than :data:`MAX_ARCHIVE_MEMBERS` files (the sizes the zip declares, which bound what Python's
    zipfile will inflate)."""
    if len(members) > MAX_ARCHIVE_MEMBERS:
        raise ModelFileError(
            f"model {str(path)!r}: the archive holds {len(members)} files; a .keras model holds "
            f"3 (limit {MAX_ARCHIVE_MEMBERS})"
        )
    total = sum(m.file_size for m in members)
    if total > MAX_ARCHIVE_BYTES:
        raise ModelFileError(
            f"model {str(path)!r}: the archive unpacks to {total / 2**20:.0f} MiB, above the "
            f"{MAX_ARCHIVE_BYTES / 2**20:.0f} MiB limit for a model (the full SegNet is ~120 MB); "
            "nothing was unpacked"
        )


def check_config_is_data(config: dict, path: Path) -> None:
    """Refuse a config that would make Keras run code or import outside Keras and segnet-tf."""
    try:
        reasons = (unsafe_reason(node) for node in _objects(config))
        reason = next((r for r in reasons if r is not None), None)
    except RecursionError:
        reason = "its config is nested too deeply to check"
    if reason is not None:
        raise ModelFileError(
            f"model {str(path)!r} refused: {reason}; nothing in it was run (a file you trust: "
            "--unsafe-load)"
        )


def unsafe_reason(node: dict) -> str | None:
    """Why Keras would run code to deserialise the config object ``node``; None if what it names
    is on the allow-list (see the module docstring)."""
    class_name = str(node.get("class_name"))
    module = node.get("module")
    registered = node.get("registered_name")
    if class_name == "__lambda__":
        return "it holds a Python lambda (bytecode)"
    if class_name in DATA_MARKERS:
        return None
    if class_name.startswith("__"):
        return f"it holds a {class_name} object, which segnet-tf models never hold"
    if class_name in REFUSED_CLASSES:
        layer = f"{class_name} layer {_layer_name(node)!r}"
        return f"it has a {layer}, which {REFUSED_CLASSES[class_name]}"
    # Keras resolves a registered name ("package>Name") from its registry before any module.
    function = node.get("config") if class_name == "function" else None
    names = (class_name, registered, function)
    foreign = next((n for n in names if ">" in str(n) and not _is_registered_own(n)), None)
    if foreign is not None:
        return f"it names {foreign!r}, which is registered by neither Keras nor segnet-tf"
    if _is_registered_own(function if class_name == "function" else registered):
        return None  # resolved from the registry, where segnet_tf> names only our classes
    if class_name == "function":
        return _function_reason(module, str(function))
    if registered not in (None, class_name):
        return f"it names {registered!r}, which is neither Keras's nor segnet-tf's"
    return _class_reason(module, class_name)


def _function_reason(module, name: str) -> str | None:
    if module == "builtins":
        found = (_resolve(m, name) for m in BUILTIN_FUNCTION_MODULES)
        obj = next((f for f in found if f is not None), None)
    else:
        obj = _resolve(module, name) if module in FUNCTION_MODULES else None
    if obj is None or obj not in _modelling_functions():
        return f"it names the function {module}.{name}, not a Keras modelling function"
    return None


def _class_reason(module, class_name: str) -> str | None:
    obj = _resolve(module, class_name) if _is_keras_module(module) else None
    if obj is None:
        return f"it names {module}.{class_name}, which is neither Keras's nor segnet-tf's"
    if not (isinstance(obj, type) and issubclass(obj, MODELLING_BASES)):
        kind = "class" if isinstance(obj, type) else type(obj).__name__
        return (
            f"it names {module}.{class_name}, a Keras {kind} that is not a layer or other "
            "modelling object"
        )
    return None


def _resolve(module: str, name: str):
    """What ``module.name`` is, looked up in modules Keras already imported (never importing)."""
    found = sys.modules.get(module)
    return getattr(found, name, None) if found is not None and name.isidentifier() else None


@cache
def _modelling_functions() -> frozenset:
    """Every public function of :data:`FUNCTION_MODULES`."""
    return frozenset(
        obj
        for module in FUNCTION_MODULES
        for name, obj in vars(sys.modules[module]).items()
        if callable(obj) and not isinstance(obj, type) and not name.startswith("_")
    )


def _layer_name(node: dict) -> str:
    inner = node.get("config")
    return str(inner.get("name", "") if isinstance(inner, dict) else node.get("name", ""))


def _is_registered_own(name) -> bool:
    """Whether ``name`` is one of segnet-tf's registered names (Keras then looks no further)."""
    own = str(name).startswith(f"{OWN_PACKAGE}>")
    return own and keras.saving.get_registered_object(name) is not None


def _is_keras_module(module) -> bool:
    return isinstance(module, str) and (module == "keras" or module.startswith("keras."))


def _objects(value) -> Iterator[dict]:
    """Every serialised object (a dict with a ``class_name``) in a config, depth first."""
    if isinstance(value, dict):
        if "class_name" in value:
            yield value
        for item in value.values():
            yield from _objects(item)
    elif isinstance(value, list):
        for item in value:
            yield from _objects(item)


def check_segmentation_model(model: keras.Model, path: Path) -> None:
    """One ``(batch, H, W, 3)`` image in, one ``(batch, H, W, classes)`` score map out."""
    try:
        inputs, outputs = model.inputs, model.outputs
    except AttributeError:  # a subclassed or unbuilt model has no graph to check
        inputs = outputs = []
    if len(inputs) != 1 or len(outputs) != 1:
        raise ModelFileError(
            f"model {str(path)!r}: {len(inputs)} inputs and {len(outputs)} outputs; a segnet-tf "
            "model has one image input and one per-pixel class score output"
        )
    image, scores = tuple(inputs[0].shape), tuple(outputs[0].shape)
    if len(image) != 4 or image[-1] != 3:
        raise ModelFileError(
            f"model {str(path)!r}: input shape {image} is not an RGB image batch (batch, H, W, 3)"
        )
    if len(scores) != 4 or not all(
        a is None or b is None or a == b for a, b in zip(image[1:3], scores[1:3], strict=True)
    ):
        raise ModelFileError(
            f"model {str(path)!r}: output shape {scores} is not per-pixel class scores "
            f"(batch, {image[1]}, {image[2]}, classes); not a segmentation model"
        )
