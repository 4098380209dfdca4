"""The catalogue of bad inputs: every command (and the API) given something a user can get
wrong must end in one sentence and exit status 2, with no traceback and nothing written.

One table, one row per bad input. Each row is run through the command line in-process;
the test asserts the exit status, that the message is one line starting with "Error:",
and that the output it named does not exist afterwards (neither it nor a half-written
``.incomplete`` folder). Everything here is refused before any training starts, so the
whole table runs in seconds.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from ae_anomaly import AutoencoderDetector
from ae_anomaly.cli import cli
from ae_anomaly.data.sources import Dataset

EXIT_USER_ERROR = 2


@dataclass(frozen=True)
class Case:
    """A command line (``{name}`` fields are paths from the ``places`` fixture) and a part
    of the sentence it must end in."""

    name: str
    args: tuple[str, ...]
    says: str


def run_case(*args: str) -> Case:
    return Case("", args, "")


RUN_FLAGS: list[tuple[str, str, str]] = [
    # (flag, value, what the sentence names)
    ("--epochs", "0", "epochs"),
    ("--epochs", "-3", "epochs"),
    ("--epochs", "1.5", "epochs"),
    ("--epochs", "many", "epochs"),
    ("--epochs", "true", "epochs"),
    ("--batch-size", "0", "batch_size"),
    ("--batch-size", "[4]", "batch_size"),
    ("--learning-rate", "0", "learning_rate"),
    ("--learning-rate", "2", "learning_rate"),
    ("--learning-rate", "fast", "learning_rate"),
    ("--lr-decay", "0", "lr_decay"),
    ("--lr-decay", "1.5", "lr_decay"),
    ("--weight-decay", "-1", "weight_decay"),
    ("--patience", "0", "patience"),
    ("--val-fraction", "0", "val_fraction"),
    ("--val-fraction", "1", "val_fraction"),
    ("--val-fraction", "half", "val_fraction"),
    ("--seed", "-1", "seed"),
    ("--seed", "9223372036854775808", "seed"),
    ("--seed", "abc", "seed"),
    ("--device", "tpu", "device"),
    ("--device", "cuda:x", "device"),
    ("--model", "transformer", "unknown model"),
    ("--model", "[conv-bn]", "model"),
    ("--model-args", "[1, 2]", "model_args"),
    ("--model-args", "{width: 3}", "bad arguments"),
    ("--model-args", "{channels: [100000, 100000]}", "parameters"),
    ("--score", "nope", "unknown score kind"),
    ("--score", "ssim+ssim", "names a kind twice"),
    ("--score", "mse+", "unknown score kind"),
    ("--threshold", "top5", "threshold"),
    ("--threshold", "percentile:101", "threshold"),
    ("--threshold", "mean+xstd", "threshold"),
    ("--members", "0", "members"),
    ("--members", "11", "members"),
    ("--members", "true", "members"),
    ("--patch", "7", "patch"),
    ("--patch", "9", "patch"),
    ("--patch", "big", "patch"),
    ("--patch", "on", "patch"),
    ("--threads", "0", "threads"),
    ("--threads", "many", "threads"),
    ("--loss", "huber", "loss"),
    ("--schedule", "step", "schedule"),
    ("--restore", "mirror", "restore"),
    ("--restore-angle", "-5", "restore_angle"),
    ("--restore-share", "2", "restore_share"),
    ("--scenario", "nope", "unknown scenario"),
    ("--dataset", "cifar", "dataset"),
    ("--train-limit", "0", "train_limit"),
    ("--test-limit", "-5", "test_limit"),
    ("--noise-std", "-1", "noise_std"),
    ("--noise-std", "[]", "noise_std"),
    ("--max-angle", "400", "max_angle"),
    ("--angle-bands", "0,40,10", "angle_bands"),
    ("--mix", "{clean: 2}", "mix"),
    ("--mix", "{purple: 0.5, clean: 0.5}", "mix"),
    ("--top-k", "0", "top_k"),
    ("--top-k", "1000", "top_k"),
    ("--threshold-data", "everything", "threshold_data"),
    ("--normal-class", "3", "normal_class"),  # the corruptions scenario has no classes
    ("--image-size", "28,28", "image_size"),  # only for image folders
    ("--channels", "3", "channels"),  # only for image folders
]

FOLDER_CASES: list[Case] = [
    Case("no such folder", ("run", "--dataset", "{tmp}/nowhere", "--out", "{out}"), "nowhere"),
    Case("a file as dataset", ("run", "--dataset", "{text}", "--out", "{out}"), "neither"),
    Case("no train folder", ("run", "--dataset", "{no_train}", "--out", "{out}"), "train/"),
    Case("empty train folder", ("run", "--dataset", "{empty}", "--out", "{out}"), "no image"),
    Case("only broken images", ("run", "--dataset", "{broken}", "--out", "{out}"), "cannot"),
    Case("a broken image", ("run", "--dataset", "{one_broken}", "--out", "{out}"), "bad.png"),
    Case(
        "grey and colour mixed",
        ("run", "--dataset", "{mixed}", "--out", "{out}"),
        "channels",
    ),
    Case(
        "a channel count of 2",
        ("run", "--dataset", "{good}", "--channels", "2", "--out", "{out}"),
        "channels",
    ),
    Case(
        "a size of zero",
        ("run", "--dataset", "{good}", "--image-size", "0,5", "--out", "{out}"),
        "image_size",
    ),
    Case(
        "an absurd size",
        ("run", "--dataset", "{good}", "--image-size", "100000,100000", "--out", "{out}"),
        "pixels",
    ),
    Case(
        "a patch larger than the images",
        ("run", "--dataset", "{good}", "--patch", "64", "--out", "{out}"),
        "larger than the images",
    ),
    Case(
        "a recipe's scenario for a folder",
        ("run", "--dataset", "{good}", "--scenario", "one-class", "--out", "{out}"),
        "named dataset",
    ),
    Case("a 1-D array", ("run", "--dataset", "{array_1d}", "--out", "{out}"), "array"),
    Case("an object array", ("run", "--dataset", "{array_object}", "--out", "{out}"), "object"),
    Case("an empty array", ("run", "--dataset", "{array_empty}", "--out", "{out}"), "array"),
    Case("an array out of [0, 1]", ("run", "--dataset", "{array_big}", "--out", "{out}"), "[0, 1]"),
    Case("an array with NaN", ("run", "--dataset", "{array_nan}", "--out", "{out}"), "finite"),
    Case("a truncated array", ("run", "--dataset", "{array_cut}", "--out", "{out}"), "npy"),
    Case(
        "an array resized",
        ("run", "--dataset", "{array_ok}", "--image-size", "10,10", "--out", "{out}"),
        "not resized",
    ),
    Case("a missing config", ("run", "--config", "{tmp}/none.yaml", "--out", "{out}"), "config"),
    Case("a config that is a list", ("run", "--config", "{yaml_list}", "--out", "{out}"), "config"),
    Case("a config of bad YAML", ("run", "--config", "{yaml_bad}", "--out", "{out}"), "YAML"),
    Case("a config nested deep", ("run", "--config", "{yaml_deep}", "--out", "{out}"), "deep"),
    Case("a config with a typo", ("run", "--config", "{yaml_typo}", "--out", "{out}"), "epochz"),
    Case("an output that is a file", ("run", "--out", "{text}"), "exists"),
    Case("an output of nothing", ("run", "--out", ""), "must name a folder"),
    Case("an output of here", ("run", "--out", "."), "must name a folder"),
    Case("resume without a run", ("run", "--resume", "--out", "{out}"), "resume"),
]

SCORE_CASES: list[Case] = [
    Case("no detector", ("score", "--detector", "{tmp}/none", "{good}/train"), "detector"),
    Case("a detector of no json", ("score", "--detector", "{det_nojson}", "{good}/train"), "json"),
    Case("a detector json of text", ("score", "--detector", "{det_text}", "{good}/train"), "json"),
    Case(
        "a detector of another format",
        ("score", "--detector", "{det_format}", "{good}/train"),
        "format",
    ),
    Case(
        "a detector, weights cut", ("score", "--detector", "{det_cut}", "{good}/train"), "weights"
    ),
    Case("a detector, no weights", ("score", "--detector", "{det_noweights}", "{good}/train"), ""),
    Case(
        "a detector, threshold NaN",
        ("score", "--detector", "{det_nan}", "{good}/train"),
        "threshold",
    ),
    Case(
        "a detector, unknown model",
        ("score", "--detector", "{det_model}", "{good}/train"),
        "unknown model",
    ),
    Case(
        "a detector, patch size odd",
        ("score", "--detector", "{det_patch}", "{good}/train"),
        "patch_size",
    ),
    Case(
        "a detector, an unknown key",
        ("score", "--detector", "{det_extra}", "{good}/train"),
        "unknown keys 'colour'",
    ),
    Case("no such input", ("score", "--detector", "{det}", "{tmp}/nothing.png"), "nothing.png"),
    Case("a glob of nothing", ("score", "--detector", "{det}", "{tmp}/*.nope"), "nope"),
    Case(
        "score, a broken image", ("score", "--detector", "{det}", "{one_broken}/train"), "bad.png"
    ),
    Case(
        "an array of another shape",
        ("score", "--detector", "{det}", "{array_ok}"),
        "shape",
    ),
    Case(
        "output into a folder",
        ("score", "--detector", "{det}", "{good}/train", "--output", "{tmp}"),
        "",
    ),
    Case(
        "error maps onto a file",
        ("score", "--detector", "{det}", "{good}/train", "--error-maps", "{text}"),
        "",
    ),
    Case(
        "a format that is not one",
        ("score", "--detector", "{det}", "{good}/train", "--format", "xml"),
        "format",
    ),
    Case(
        "a batch of zero",
        ("score", "--detector", "{det}", "{good}/train", "--batch-size", "0"),
        "batch-size",
    ),
    Case(
        "a device that is not one",
        ("score", "--detector", "{det}", "{good}/train", "--device", "tpu"),
        "device",
    ),
    Case("no input at all", ("score", "--detector", "{det}"), ""),
]

EXPORT_CASES: list[Case] = [
    Case("export, no detector", ("export", "--detector", "{tmp}/none", "--output", "{out}"), ""),
    Case(
        "export, a detector of text",
        ("export", "--detector", "{det_text}", "--output", "{out}"),
        "json",
    ),
    Case(
        "export, another format",
        ("export", "--detector", "{det}", "--format", "tflite", "--output", "{out}"),
        "format",
    ),
    Case(
        "export, into a folder that is a file",
        ("export", "--detector", "{det}", "--output", "{text}/m.onnx"),
        "",
    ),
    Case(
        "export, a detector with NaN weights",
        ("export", "--detector", "{det_nanweights}", "--output", "{out}"),
        "",
    ),
]

CLASSIFY_CASES: list[Case] = [
    Case("classify, epochs 0", ("classify", "train", "--epochs", "0", "--out", "{out}"), "epochs"),
    Case(
        "classify, a dataset by path",
        ("classify", "train", "--dataset", "{good}", "--out", "{out}"),
        "dataset",
    ),
    Case("classify, no classifier", ("classify", "evaluate", "--classifier", "{tmp}/none"), ""),
    Case(
        "classify, a detector as classifier",
        ("classify", "evaluate", "--classifier", "{det}"),
        "",
    ),
    Case(
        "compare, an unknown model",
        ("compare", "--models", "fc-small,resnet", "--out", "{out}"),
        "resnet",
    ),
    Case(
        "compare, a model twice", ("compare", "--models", "conv-bn,conv-bn", "--out", "{out}"), ""
    ),
    Case(
        "benchmark, a class of 12",
        ("benchmark", "--classes", "12", "--out", "{out}"),
        "class",
    ),
    Case("benchmark, no seeds", ("benchmark", "--seeds", "0", "--out", "{out}"), "seeds"),
]

CASES: list[Case] = (
    [
        Case(f"run {flag} {value}", ("run", flag, value, "--out", "{out}"), says)
        for flag, value, says in RUN_FLAGS
    ]
    + FOLDER_CASES
    + SCORE_CASES
    + EXPORT_CASES
    + CLASSIFY_CASES
)


def test_the_catalogue_holds_over_a_hundred_bad_inputs() -> None:
    assert len(CASES) >= 100
    assert len({case.name for case in CASES}) == len(CASES)


@pytest.fixture(scope="module")
def places(mnist: Dataset, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Every path the table names: good and bad folders, arrays, configs and detectors."""
    root = tmp_path_factory.mktemp("catalogue")
    paths: dict[str, Path] = {"tmp": root}

    def images(name: str, arrays: list[np.ndarray], sub: str = "train") -> Path:
        folder = root / name / sub
        folder.mkdir(parents=True, exist_ok=True)
        for i, array in enumerate(arrays):
            Image.fromarray(array).save(folder / f"{i}.png")
        return root / name

    digits = list(mnist.train_images[:40])
    paths["good"] = images("good", digits)
    paths["empty"] = root / "empty"
    (paths["empty"] / "train").mkdir(parents=True)
    paths["no_train"] = images("no_train", digits[:3], sub="images")
    paths["broken"] = root / "broken"
    (paths["broken"] / "train").mkdir(parents=True)
    (paths["broken"] / "train" / "a.png").write_bytes(b"not an image")
    paths["one_broken"] = images("one_broken", digits[:10])
    (paths["one_broken"] / "train" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    paths["mixed"] = images("mixed", digits[:5])
    Image.fromarray(np.zeros((28, 28, 3), np.uint8)).save(paths["mixed"] / "train" / "c.png")
    paths["text"] = root / "notes.txt"
    paths["text"].write_text("hello")
    arrays = {
        "array_1d": np.zeros(10, np.uint8),
        "array_object": np.array([object(), object()], dtype=object),
        "array_empty": np.zeros((0, 28, 28), np.uint8),
        "array_big": np.full((10, 28, 28), 3.0, np.float32),
        "array_nan": np.full((10, 28, 28), np.nan, np.float32),
        "array_ok": np.zeros((10, 1, 20, 20), np.uint8),
    }
    for name, array in arrays.items():
        paths[name] = root / f"{name}.npy"
        np.save(paths[name], array, allow_pickle=True)
    paths["array_cut"] = root / "array_cut.npy"
    paths["array_cut"].write_bytes(paths["array_ok"].read_bytes()[:120])
    configs = {
        "yaml_list": "- 1\n- 2\n",
        "yaml_bad": "training: {epochs: [\n",
        "yaml_deep": "a: " + "[" * 5000 + "]" * 5000 + "\n",
        "yaml_typo": "training:\n  epochz: 3\n",
    }
    for name, text in configs.items():
        paths[name] = root / f"{name}.yaml"
        paths[name].write_text(text)
    paths.update(_detectors(mnist, root))
    return {name: str(path) for name, path in paths.items()}


def _detectors(mnist: Dataset, root: Path) -> dict[str, Path]:
    """A small saved detector, and copies of it each broken in one way."""
    detector = AutoencoderDetector(
        model_args={"channels": [4, 8], "code": 4}, epochs=1, batch_size=32, device="cpu"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        detector.fit(mnist.train_images[:100])
    saved = detector.save(root / "det")
    meta = json.loads((saved / "detector.json").read_text())
    weights = (saved / "weights.safetensors").read_bytes()

    def copy(name: str, json_text: str | None, weight_bytes: bytes | None) -> Path:
        folder = root / name
        folder.mkdir()
        if json_text is not None:
            (folder / "detector.json").write_text(json_text)
        if weight_bytes is not None:
            (folder / "weights.safetensors").write_bytes(weight_bytes)
        return folder

    def edited(**changes: object) -> str:
        return json.dumps({**meta, **changes})

    nan_weights = bytearray(weights)
    nan_weights[-4:] = np.array([np.nan], np.float32).tobytes()
    return {
        "det": saved,
        "det_nojson": copy("det_nojson", None, weights),
        "det_text": copy("det_text", "{not json", weights),
        "det_format": copy("det_format", edited(format="something-else"), weights),
        "det_cut": copy("det_cut", json.dumps(meta), weights[:200]),
        "det_noweights": copy("det_noweights", json.dumps(meta), None),
        "det_nan": copy(
            "det_nan", edited(threshold={"rule": "percentile:95", "value": None}), weights
        ),
        "det_model": copy(
            "det_model",
            edited(model="resnet", params={**meta["params"], "model": "resnet"}),
            weights,
        ),
        "det_patch": copy("det_patch", edited(patch_size=9), weights),
        "det_extra": copy("det_extra", edited(colour="red"), weights),
        "det_nanweights": copy("det_nanweights", json.dumps(meta), bytes(nan_weights)),
    }


def _filled(arg: str, places: dict[str, str]) -> str:
    """``arg`` with its ``{name}`` places filled (and YAML braces left alone)."""
    for name, path in places.items():
        arg = arg.replace("{" + name + "}", path)
    return arg


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_a_bad_input_ends_in_one_sentence_and_leaves_nothing(
    case: Case, places: dict[str, str], tmp_path: Path, shared_data_dir: Path
) -> None:
    out = tmp_path / "out"
    args = [_filled(arg, {**places, "out": str(out)}) for arg in case.args]
    env = {"AE_ANOMALY_DATA": str(shared_data_dir)}
    result = CliRunner().invoke(cli, args, env=env)
    output = result.output.strip()
    assert result.exit_code == EXIT_USER_ERROR, (result.exit_code, output[-2000:])
    assert "Traceback" not in output, output
    errors = [line for line in output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, output
    assert case.says.lower() in errors[0].lower(), errors[0]
    assert not out.exists() and not out.with_name("out.incomplete").exists()


def _saved(places: dict[str, str]) -> AutoencoderDetector:
    """The catalogue's small saved detector (the ``places`` fixture fitted it once)."""
    return AutoencoderDetector.load(places["det"], device="cpu")


API_CASES = {
    "fit with epochs 0": lambda m, p: AutoencoderDetector(epochs=0).fit(m.train_images[:50]),
    "fit with a device of 123": lambda m, p: AutoencoderDetector(device=123).fit(
        m.train_images[:50]
    ),
    "fit with a seed of text": lambda m, p: AutoencoderDetector(seed="a").fit(m.train_images[:50]),
    "fit with model_args of text": lambda m, p: AutoencoderDetector(model_args="abc").fit(
        m.train_images[:50]
    ),
    "fit on one image": lambda m, p: AutoencoderDetector().fit(m.train_images[:1]),
    "fit on NaN images": lambda m, p: AutoencoderDetector().fit(np.full((20, 28, 28), np.nan)),
    "fit on a 1-D array": lambda m, p: AutoencoderDetector().fit(np.zeros(50)),
    "fit with images as y": lambda m, p: AutoencoderDetector().fit(
        m.train_images[:50], m.train_images[:50]
    ),
    "score before fit": lambda m, p: AutoencoderDetector().decision_function(m.test_images[:5]),
    "predict before fit": lambda m, p: AutoencoderDetector().predict(m.test_images[:5]),
    "save before fit": lambda m, p: AutoencoderDetector().save("/tmp/never-written"),
    "load from nowhere": lambda m, p: AutoencoderDetector.load("/nonexistent/detector"),
    "score images of another size": lambda m, p: _saved(p).decision_function(np.zeros((3, 20, 20))),
    "score images out of [0, 1]": lambda m, p: _saved(p).decision_function(
        np.full((3, 28, 28), 7.0)
    ),
}


@pytest.mark.parametrize("name", list(API_CASES))
def test_a_bad_call_of_the_api_is_one_user_error(
    name: str, mnist: Dataset, places: dict[str, str]
) -> None:
    from ae_anomaly.errors import UserError

    with pytest.raises(UserError) as caught:
        API_CASES[name](mnist, places)
    message = str(caught.value).strip()
    assert message and "\n" not in message
    assert not Path("/tmp/never-written").exists()
