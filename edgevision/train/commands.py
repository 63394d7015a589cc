"""Arguments of `edgevision train ...` and `edgevision export ...`.

Kept free of torch so that `edgevision --help` and `edgevision info` stay fast and work without the
train extra; the functions they call import torch.
"""
from __future__ import annotations

import shlex
import sys


def add_train_parser(sub) -> None:
    """Add `train classify|gan|sr` to the `edgevision` command's subparsers."""
    p = sub.add_parser("train", help="train a model (needs the train extra: pip install edgevision[train])")
    tasks = p.add_subparsers(dest="task", required=True)

    def common(q, epochs):
        q.add_argument("--out", required=True, help="run folder: last.pt, best.pt, metrics.csv, metrics.json")
        q.add_argument("--epochs", type=float, default=epochs, help="fractional allowed (last epoch cut short)")
        q.add_argument("--seed", type=int, default=0)
        q.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda when available)")
        q.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
        q.add_argument("--no-resume", dest="resume", action="store_false", help="ignore OUT/last.pt")
        q.add_argument("--quiet", action="store_true")
        q.add_argument("--budget-minutes", type=float, default=None,
                       help="bound the training wall time; the schedule anneals by time or steps, whichever is further")

    q = tasks.add_parser("classify", help="image classifier on a CIFAR-10 binary folder or an image folder")
    q.add_argument("--data", required=True, help="CIFAR-10 binary folder, or ROOT with train/<class>/ (and test/)")
    q.add_argument("--model", default="fastnet")
    q.add_argument("--recipe", default=None, choices=["airbench", "adam", "sgd"])
    q.add_argument("--holdout", type=int, default=5000, help="training images held out for validation")
    q.add_argument("--size", type=int, nargs=2, default=None, metavar=("H", "W"), help="image-folder input size")
    for name, typ in (("batch-size", int), ("lr", float), ("momentum", float), ("weight-decay", float),
                      ("label-smoothing", float), ("translate", int)):
        q.add_argument(f"--{name}", type=typ, default=None, help="overrides the recipe")
    q.add_argument("--flip", type=int, choices=[0, 1], default=None, help="overrides the recipe")
    q.add_argument("--lookahead", type=int, choices=[0, 1], default=None, help="overrides the recipe")
    common(q, 10)
    q.set_defaults(fn=_run_classify)

    q = tasks.add_parser("gan", help="class-conditional DCGAN on a CIFAR-10 binary folder or an image folder")
    q.add_argument("--data", required=True)
    q.add_argument("--latent", type=int, default=128)
    q.add_argument("--g-width", type=int, default=256)
    q.add_argument("--d-width", type=int, default=64)
    q.add_argument("--aux-weight", type=float, default=1.0,
                   help="weight of the discriminator's class head (AC-GAN) in both losses; 0 turns it off")
    q.add_argument("--batch-size", type=int, default=64)
    q.add_argument("--lr", type=float, default=2e-4)
    q.add_argument("--judge", default=None, help="classify checkpoint that scores samples (selects the best epoch)")
    q.add_argument("--eval-samples", type=int, default=1000, help="samples the judge scores each epoch")
    q.add_argument("--final-samples", type=int, default=10000, help="samples scored at the end")
    common(q, 20)
    q.set_defaults(fn=_run_gan)

    q = tasks.add_parser("sr", help="ESPCN super-resolution on HR images (T91-style folder or SR root)")
    q.add_argument("--data", required=True, help="folder of HR images, or a root with T91/ Set5/ Set14/")
    q.add_argument("--eval", dest="eval_dirs", nargs="*", default=None, help="evaluation folders (default Set5 Set14)")
    q.add_argument("--scale", type=int, default=2, choices=[2, 3, 4])
    q.add_argument("--channels", type=int, default=1, choices=[1, 3], help="1: Y of YCbCr, 3: RGB")
    q.add_argument("--width", type=int, default=64)
    q.add_argument("--depth", type=int, default=3)
    q.add_argument("--patch", type=int, default=24, help="LR patch size")
    q.add_argument("--batch-size", type=int, default=32)
    q.add_argument("--lr", type=float, default=1e-3)
    q.add_argument("--steps-per-epoch", type=int, default=200)
    q.add_argument("--holdout", type=int, default=5, help="training images held out for validation")
    q.add_argument("--init-from", default=None, help="SR checkpoint to start from (e.g. the x2 model for x3/x4)")
    common(q, 20)
    q.set_defaults(fn=_run_sr)


def _command(args) -> str:
    """The command line that reproduces this run, every option spelled out (defaults included)."""
    words = ["edgevision", "train", args.task]
    for key, value in vars(args).items():
        if key in ("fn", "command", "task") or value is None:
            continue
        flag = "--" + key.replace("_", "-")
        if key == "resume":
            words += [] if value else ["--no-resume"]
        elif key == "quiet":
            words += [flag] if value else []
        elif isinstance(value, (list, tuple)):
            words += [flag, *map(str, value)]
        else:
            words += [flag, str(value)]
    return " ".join(shlex.quote(w) for w in words)


def _run_classify(args) -> int:
    hp = {k: getattr(args, k) for k in ("batch_size", "lr", "momentum", "weight_decay", "label_smoothing",
                                          "translate", "flip", "lookahead")}
    hp = {k: (bool(v) if k in ("flip", "lookahead") and v is not None else v) for k, v in hp.items()}
    from .api import train_classify

    train_classify(args.data, args.out, args.model, args.epochs, recipe=args.recipe, holdout=args.holdout,
                   size=tuple(args.size) if args.size else None, command=_command(args), **_common(args), **hp)
    return 0


def _common(args) -> dict:
    return {k: getattr(args, k) for k in ("seed", "device", "threads", "resume", "quiet", "budget_minutes")}


def _run_gan(args) -> int:
    from .api import train_gan

    train_gan(args.data, args.out, args.epochs, latent=args.latent, g_width=args.g_width, d_width=args.d_width,
              batch_size=args.batch_size, lr=args.lr, aux_weight=args.aux_weight, judge=args.judge,
              eval_samples=args.eval_samples,
              final_samples=args.final_samples, command=_command(args), **_common(args))
    return 0


def _run_sr(args) -> int:
    from .api import train_sr

    train_sr(args.data, args.out, args.epochs, scale=args.scale, channels=args.channels, width=args.width,
             depth=args.depth, patch=args.patch, batch_size=args.batch_size, lr=args.lr,
             steps_per_epoch=args.steps_per_epoch, holdout=args.holdout, eval_dirs=args.eval_dirs,
             init_from=args.init_from, command=_command(args), **_common(args))
    return 0


def add_export_parser(sub) -> None:
    """Add `export` to the `edgevision` command's subparsers."""
    p = sub.add_parser("export", help="checkpoint or built-in model -> self-describing ONNX, verified with ONNX Runtime")
    p.add_argument("checkpoint", nargs="?", help="best.pt / last.pt of `edgevision train`")
    p.add_argument("--model", help="export a built-in model instead of a checkpoint (e.g. efficientnet_lite0)")
    p.add_argument("--pretrained", action="store_true", help="with --model efficientnet_lite0: ImageNet weights")
    p.add_argument("--num-classes", type=int, default=1000, help="with --model")
    p.add_argument("--input-size", type=int, nargs=2, default=[224, 224], metavar=("H", "W"), help="with --model")
    p.add_argument("--format", default="onnx", choices=["onnx"])
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--name", default=None, help="model name stored in the metadata (default: file name)")
    p.add_argument("-o", "--output", required=True, help="path of the .onnx file")
    p.set_defaults(fn=_run_export)


def _run_export(args) -> int:
    import json

    from .. import export

    if (args.checkpoint is None) == (args.model is None):
        sys.exit("edgevision export: give a CHECKPOINT or --model NAME (not both)")
    if args.checkpoint:
        report = export.export_checkpoint(args.checkpoint, args.output, opset=args.opset, name=args.name)
    else:
        report = export.export_builtin(args.model, args.output, pretrained=args.pretrained,
                                       num_classes=args.num_classes, input_size=tuple(args.input_size),
                                       opset=args.opset, name=args.name)
    print(json.dumps(report))
    return 0
