"""Options shared by several commands, each defined once, and the objects they build.

``preprocessing_options`` and ``execution_options`` add a group of options to a command and hand
it one :class:`~bloodcli.imaging.preprocessing.Preprocessing` or
:class:`~bloodcli.pipeline.options.ExecutionOptions` instead. Defaults and the names listed in
help texts come from the registries.
"""

from __future__ import annotations

import functools
import inspect
from pathlib import Path
from typing import Annotated, Optional

import typer

from bloodcli.cli.output import output
from bloodcli.features import DEFAULT_FEATURES
from bloodcli.imaging.augmentation import Augmentation
from bloodcli.imaging.preprocessing import Preprocessing
from bloodcli.learn.classifiers import CLASSIFIERS, DEFAULT_CLASSIFIER
from bloodcli.pipeline.options import ExecutionOptions

MODEL_NAMES = ", ".join(CLASSIFIERS) + ", or cnn (a fine-tuned network, see --backbone)"

FeaturesOpt = Annotated[str, typer.Option("--features", "-f", help="Extractors, comma-separated (see 'bloodcli features').")]
FeatureOptionOpt = Annotated[
    Optional[list[str]],
    typer.Option("--feature-option", "-F", help="Extractor parameter EXTRACTOR.PARAM=VALUE, e.g. glcm.levels=16 (repeatable)."),
]
ModelOpt = Annotated[str, typer.Option("--model", "-m", help=f"Classifier: {MODEL_NAMES}.")]
OutputFileOpt = Annotated[Optional[Path], typer.Option("--output", "-o", help="File to write.")]
OutDirOpt = Annotated[Optional[Path], typer.Option("--out-dir", help="Folder to write the outputs to.")]
WeightsOpt = Annotated[
    Optional[str],
    typer.Option("--weights", help="Deep extractors' weights: imagenet, none (random) or a local no-top PATH.h5 (offline)."),
]
AugmentOpt = Annotated[
    Optional[str],
    typer.Option("--augment", help="Also fit on augmented copies of the training images, KEY=VALUE,... of "
                 f"{', '.join(f'{k}={v}' for k, v in Augmentation().to_dict().items())} (copies: per image; hed, "
                 "brightness, contrast, scale: jitter strengths; blur: max sigma px). Scored samples are never augmented."),
]  # fmt: skip
LabelMapOpt = Annotated[
    Optional[str], typer.Option("--label-map", help="Rename dataset labels to training classes: A=a,B=b (case is ignored anyway).")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]
SeedOpt = Annotated[int, typer.Option("--seed", min=0, max=2**32 - 1, help="Random seed for splits, models and augmentation.")]
CacheDirOpt = Annotated[Optional[Path], typer.Option("--cache-dir", help="Feature cache folder (default: $BLOODCLI_CACHE_DIR or ~/.cache/bloodcli).")]
JobsOpt = Annotated[Optional[int], typer.Option("--jobs", "-j", help="Cores to use: this process and N-1 workers (default: all cores).")]
SchedulerOpt = Annotated[
    Optional[str],
    typer.Option("--scheduler", help="Run on Dask: scheduler address (tcp://host:8786) or 'local' (default: $DASK_SCHEDULER_ADDRESS)."),
]
SkipErrorsOpt = Annotated[bool, typer.Option("--skip-errors", help="Skip unreadable images and list them instead of stopping.")]

DEFAULTS = {"features": DEFAULT_FEATURES, "model": DEFAULT_CLASSIFIER}


def option_group(target: str, build, **options):
    """Add shared options to a command and pass them to it as one object.

    ``options`` maps parameter names to ``(Annotated type, default)``; the command receives
    ``build(**values)`` as its ``target`` parameter instead. One definition serves every command.
    """

    def decorator(command):
        signature = inspect.signature(command, eval_str=True)  # real annotations: Typer reads them as given
        kept = [p for p in signature.parameters.values() if p.name != target]
        added = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=kind, default=default)
                 for name, (kind, default) in options.items()]  # fmt: skip

        @functools.wraps(command)
        def wrapper(*args, **kwargs):
            kwargs[target] = build(**{name: kwargs.pop(name) for name in options})
            return command(*args, **kwargs)

        wrapper.__signature__ = signature.replace(parameters=[*kept, *added])
        return wrapper

    return decorator


def _preprocessing(cell_frame, stain, cell_diameter, resize, gaussian, median, clahe, grayscale, roi) -> Preprocessing:
    return Preprocessing(cell_frame=cell_frame, stain=stain, cell_diameter=cell_diameter, resize=resize, gaussian_sigma=gaussian,
                         median_size=median, clahe_clip=clahe, grayscale=grayscale, roi=roi)  # fmt: skip


def _execution(cache_dir, no_cache, jobs, batch_size, device, scheduler, skip_errors) -> ExecutionOptions:
    from bloodcli.errors import UsageError
    from bloodcli.features.deep import DEVICES

    if device.lower() not in DEVICES:
        raise UsageError(f"unknown device {device!r} (choose from {', '.join(DEVICES)})")
    if jobs is not None and jobs < 0:
        raise UsageError(f"--jobs must be >= 0 (0: all cores), got {jobs}")
    return ExecutionOptions(cache_dir=cache_dir, use_cache=not no_cache, jobs=jobs, skip_errors=skip_errors,
                            batch_size=batch_size, device=device.lower(), scheduler=scheduler)  # fmt: skip


#: --stain, --resize, --gaussian, ... as one Preprocessing argument named ``preprocessing``.
preprocessing_options = option_group(
    "preprocessing", _preprocessing,
    cell_frame=(Annotated[Optional[float], typer.Option("--cell-frame", help="Crop a square of N cell diameters around the central "
                "cell first (e.g. 1.5): tight and loose crops from different labs then frame the cell alike.")], None),
    stain=(Annotated[Optional[str], typer.Option("--stain", help="Stain normalisation: reinhard or macenko (reference fitted on "
           "the training images, per training part under cross-validation).")], None),
    cell_diameter=(Annotated[Optional[str], typer.Option("--cell-diameter", help="Rescale each cell to this diameter in pixels, "
                   "or 'auto' (training median).")], None),
    resize=(Annotated[Optional[int], typer.Option("--resize", help="Resize so the longer side has N pixels.")], None),
    gaussian=(Annotated[float, typer.Option("--gaussian", help="Gaussian blur sigma in pixels (0 = off).")], 0.0),
    median=(Annotated[int, typer.Option("--median", help="Median blur aperture, odd (0 = off).")], 0),
    clahe=(Annotated[float, typer.Option("--clahe", help="CLAHE clip limit on lightness (0 = off).")], 0.0),
    grayscale=(Annotated[bool, typer.Option("--grayscale", help="Convert to grey before extracting features.")], False),
    roi=(Annotated[str, typer.Option("--roi", help="Where classical features are measured: cell (the cell nearest the "
         "centre) or image (the whole image, for inputs that are not single-cell crops).")], "cell"),
)  # fmt: skip

#: --cache-dir, --jobs, --device, ... as one ExecutionOptions argument named ``run``.
execution_options = option_group(
    "run", _execution,
    cache_dir=(CacheDirOpt, None),
    no_cache=(Annotated[bool, typer.Option("--no-cache", help="Neither read nor write the feature cache.")], False),
    jobs=(JobsOpt, None),
    batch_size=(Annotated[int, typer.Option("--batch-size", min=1, help="Images per CNN batch.")], 32),
    device=(Annotated[str, typer.Option("--device", help="Where deep extractors run: cpu, gpu or auto.")], "auto"),
    scheduler=(SchedulerOpt, None),
    skip_errors=(SkipErrorsOpt, False),
)  # fmt: skip


def _network(backbone, epochs, image_size, framing) -> dict:
    """The fine-tuning options given (empty when none was): they apply only with -m cnn."""
    given = {"backbone": backbone, "epochs": epochs, "image_size": image_size, "framing": _number_or_word(framing)}
    return {key: value.strip().lower() if isinstance(value, str) else value for key, value in given.items() if value is not None}


def _number_or_word(text: str | None):
    try:
        return float(text)
    except (TypeError, ValueError):
        return text


#: --backbone, --epochs, --image-size, --framing as one dict argument named ``network`` (used with -m cnn).
network_options = option_group(
    "network", _network,
    backbone=(Annotated[Optional[str], typer.Option("--backbone", help="With -m cnn: the ImageNet network to fine-tune, "
              "mobilenetv2 (default), mobilenet, resnet50, efficientnetb0, vgg16 or vgg19 (its weights: --weights).")], None),
    epochs=(Annotated[Optional[int], typer.Option("--epochs", help="With -m cnn: most fine-tuning epochs (default 12; "
            "early stopping on a validation split of the training images may stop sooner).")], None),
    image_size=(Annotated[Optional[int], typer.Option("--image-size", help="With -m cnn: network input in pixels "
                "(default 128; 128-160 keeps a CPU usable, 224 is the ImageNet size).")], None),
    framing=(Annotated[Optional[str], typer.Option("--framing", help="With -m cnn: cut each image to a square of N red-cell "
             "diameters (estimated in the image) around its cell, so any lab's crops and magnification look alike; auto "
             "(default: the training images' own framing), none, or N.")], None),
)  # fmt: skip


def cnn_settings(model: str, network: dict, *, weights: str | None, augment: str | None, batch_size: int, seed: int,
                 feature_option) -> object | None:  # fmt: skip
    """The CNN settings of -m cnn (None for a classifier on features); options that do not apply are refused."""
    from bloodcli.errors import UsageError

    if model.strip().lower() != "cnn":
        if network:
            raise UsageError(f"--{', --'.join(k.replace('_', '-') for k in network)} only apply with -m cnn")
        return None
    if feature_option:
        raise UsageError("-m cnn learns its own features: --feature-option does not apply")
    from bloodcli.learn.cnn.settings import CNNSettings, cnn_augmentation

    return CNNSettings(weights=weights or "imagenet", augmentation=cnn_augmentation(augment), batch_size=batch_size, seed=seed,
                       **network)  # fmt: skip


def augmentation(spec: str | None) -> Augmentation | None:
    """Parse --augment; warn when it adds nothing."""
    parsed = None if spec is None else Augmentation.from_string(spec)
    if parsed is not None and not parsed.enabled:
        output().warn("--augment adds no copies without copies=N (N >= 1)")
    return parsed
