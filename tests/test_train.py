"""The shared training loop on tiny data made here: one short epoch of each task, checkpoints that
load with weights_only=True, resume, the wall-time budget, metrics files and DDP under torchrun."""
import csv
import json
import os
import socket

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edgevision import cli  # noqa: E402
from edgevision.train import train_classify, train_gan, train_sr  # noqa: E402


def make_cifar(folder, n_per_batch=40, seed=0):
    """Fake CIFAR-10 binary batches whose classes differ in mean colour, so they are learnable."""
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        labels = rng.integers(0, 10, n_per_batch)
        pixels = rng.normal(128, 30, (n_per_batch, 3, 1024)) + (labels[:, None, None] - 4.5) * 20
        raw = np.concatenate([labels[:, None], pixels.reshape(n_per_batch, -1).clip(0, 255)], 1).astype(np.uint8)
        raw.tofile(os.path.join(folder, name))
    return str(folder)


@pytest.fixture(scope="module")
def cifar(tmp_path_factory):
    return make_cifar(tmp_path_factory.mktemp("cifar"))


def test_classify_one_epoch_cli_then_resume(cifar, tmp_path):
    out = str(tmp_path / "run")
    args = ["train", "classify", "--data", cifar, "--model", "seed_cnn", "--out", out, "--holdout", "40",
            "--batch-size", "32", "--epochs", "1", "--quiet", "--threads", "1"]
    assert cli.main(args) == 0
    for name in ("last.pt", "best.pt", "metrics.csv", "metrics.json"):
        assert os.path.isfile(os.path.join(out, name))
    ckpt = torch.load(os.path.join(out, "best.pt"), weights_only=True)
    assert ckpt["task"] == "classify" and ckpt["epoch"] == 1 and ckpt["step"] == 160 // 32
    assert 0 <= ckpt["final"]["test_acc"] <= 1 and ckpt["final"]["test_images"] == 40
    assert ckpt["meta"]["labels"][3] == "cat" and ckpt["meta"]["input_size"] == [32, 32]
    assert ckpt["command"].startswith("edgevision train classify")
    # resume: a second call with more epochs continues after epoch 1 instead of starting over
    args[args.index("--epochs") + 1] = "2"
    assert cli.main(args) == 0
    summary = json.load(open(os.path.join(out, "metrics.json")))
    assert [row["epoch"] for row in summary["history"]] == [1, 2] and summary["steps"] == 2 * 5
    rows = list(csv.DictReader(open(os.path.join(out, "metrics.csv"))))
    assert len(rows) == 2 and {"train_loss", "train_acc", "val_acc", "images_per_s"} <= set(rows[0])


def test_resume_matches_uninterrupted_run(cifar, tmp_path):
    kw = dict(model="seed_cnn", holdout=40, batch_size=32, quiet=True, lr=3e-3)
    whole = train_classify(cifar, str(tmp_path / "a"), epochs=2, **kw)
    train_classify(cifar, str(tmp_path / "b"), epochs=1, **kw)
    resumed = train_classify(cifar, str(tmp_path / "b"), epochs=2, **kw)
    assert whole["history"][-1]["train_loss"] == pytest.approx(resumed["history"][-1]["train_loss"], rel=1e-5)


def test_fastnet_airbench_recipe_learns(cifar, tmp_path):
    summary = train_classify(cifar, str(tmp_path / "f"), "fastnet", epochs=2, holdout=40, batch_size=40, quiet=True,
                             model_kwargs={"widths": (8, 16, 16)})
    assert summary["history"][-1]["train_loss"] < summary["history"][0]["train_loss"]
    assert summary["best"]["name"] == "val_acc" and 0 <= summary["final"]["test_acc"] <= 1


def test_budget_stops_training(cifar, tmp_path):
    summary = train_classify(cifar, str(tmp_path / "t"), "seed_cnn", epochs=50, holdout=40, batch_size=32,
                             quiet=True, budget_minutes=1e-9)
    assert summary["steps"] == 0 and len(summary["history"]) == 1
    assert torch.load(str(tmp_path / "t" / "last.pt"), weights_only=True)["done"]


def test_holdout_must_leave_training_data(cifar, tmp_path):
    with pytest.raises(ValueError, match="hold-out"):
        train_classify(cifar, str(tmp_path / "h"), "seed_cnn", epochs=1, holdout=10_000, quiet=True)


def test_gan_one_epoch_with_judge(cifar, tmp_path):
    judge = str(tmp_path / "judge")
    train_classify(cifar, judge, "fastnet", epochs=0.2, holdout=40, batch_size=32, quiet=True,
                   model_kwargs={"widths": (8, 8, 8)})
    summary = train_gan(cifar, str(tmp_path / "gan"), epochs=0.2, latent=16, g_width=32, d_width=8, batch_size=32,
                        judge=os.path.join(judge, "best.pt"), eval_samples=20, final_samples=30, quiet=True)
    final = summary["final"]
    assert summary["steps"] == 2 and 0 <= final["cond_acc"] <= 1 and final["samples"] == 30
    assert final["frechet_distance_judge_features"] > 0 and final["test_images"] == 40
    ckpt = torch.load(str(tmp_path / "gan" / "best.pt"), weights_only=True)
    assert set(ckpt["modules"]) == {"generator", "discriminator"} and ckpt["meta"]["latent_size"] == 16


def test_frechet_distance():
    from edgevision.train.gan import frechet_distance

    g = torch.Generator().manual_seed(0)
    a = torch.randn(4000, 3, generator=g)
    assert frechet_distance(a, a) == pytest.approx(0, abs=1e-6)
    # N(0, I) vs N(1, 4I) in 3-d: |mu|^2 = 3, trace term 3 * (1 + 4 - 2 * 2) = 3
    assert frechet_distance(a, 1 + 2 * torch.randn(4000, 3, generator=g)) == pytest.approx(6, rel=0.1)


def make_sr_folder(folder, n=6):
    import cv2

    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        smooth = cv2.resize(rng.integers(0, 256, (6, 7, 3), dtype=np.uint8), (56, 48), interpolation=cv2.INTER_CUBIC)
        cv2.imwrite(os.path.join(folder, f"img{i}.png"), smooth)
    return str(folder)


def test_sr_one_epoch(tmp_path):
    data = make_sr_folder(tmp_path / "hr")
    summary = train_sr(data, str(tmp_path / "sr"), epochs=1, scale=3, width=8, depth=2, patch=8, batch_size=4,
                       steps_per_epoch=3, holdout=2, eval_dirs=[data], quiet=True)
    final = summary["final"]
    assert {"val_psnr", "hr_psnr", "hr_bicubic_psnr"} <= set(final) and final["hr_psnr"] > 15
    ckpt = torch.load(str(tmp_path / "sr" / "best.pt"), weights_only=True)
    assert ckpt["meta"]["sr_scale"] == 3 and ckpt["meta"]["channels"] == "Y"

    # x4 starting from the x3 body: every tensor but the sub-pixel output conv comes from the x3 run.
    train_sr(data, str(tmp_path / "sr4"), epochs=0.01, scale=4, width=8, depth=2, patch=8, batch_size=4,
             steps_per_epoch=3, holdout=2, quiet=True, init_from=str(tmp_path / "sr" / "best.pt"))
    x4 = torch.load(str(tmp_path / "sr4" / "last.pt"), weights_only=True)["modules"]["model"]
    x3 = ckpt["modules"]["model"]
    assert x4["body.0.weight"].shape == x3["body.0.weight"].shape
    assert x4["body.4.weight"].shape != x3["body.4.weight"].shape
    with pytest.raises(ValueError, match="no tensor matches"):
        train_sr(data, str(tmp_path / "bad"), epochs=0.01, scale=4, width=4, depth=2, patch=8, batch_size=4,
                 steps_per_epoch=3, holdout=2, quiet=True, init_from=str(tmp_path / "sr" / "best.pt"))


def _ddp_worker(rank, world, port, data, out):
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    train_classify(data, out, "seed_cnn", epochs=1, holdout=40, batch_size=32, quiet=True, device="cpu")
    torch.distributed.destroy_process_group()


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("EV_TEST_DDP"), reason="set EV_TEST_DDP=1: spawning 2 ranks takes ~25 s")
def test_ddp_two_processes(cifar, tmp_path):
    """What torchrun sets up (RANK, WORLD_SIZE, ...) is all the loop needs: the same code trains on 2 ranks."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = str(tmp_path / "ddp")
    torch.multiprocessing.spawn(_ddp_worker, args=(2, port, cifar, out), nprocs=2)
    ckpt = torch.load(os.path.join(out, "best.pt"), weights_only=True)
    assert ckpt["step"] == 160 // 32 and "test_acc" in ckpt["final"]
