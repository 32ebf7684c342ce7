"""The deployment part of the GPU check (gpu_check.py): latency of dense and channel-pruned ResNet-18, eager and
AOTInductor, and 2:4 semi-structured against dense matmuls on wide Linear layers."""

from __future__ import annotations

from typing import Any, Callable

from gpu_check_context import PartContext, error_line


def _latency(ctx: PartContext, fn: Callable[[], Any], batch: int) -> dict[str, Any]:
    from exporters.latency import measure_latency

    runs = 3 if ctx.dry else (300 if batch == 1 else 100)
    return measure_latency(fn, warmup=1 if ctx.dry else 20, runs=runs, batch_size=batch, cuda_events=ctx.cuda,
                           sync=None)


def part_deploy(ctx: PartContext) -> None:
    """Dense vs channels-50 ResNet-18, eager vs AOTInductor, batch 1 and 128; 2:4 vs dense on wide Linear layers."""
    import torch

    import structural
    from compressor.flops import count_macs

    batches = (1, 8) if ctx.dry else (1, 128)
    arch = "cnn-small" if ctx.dry else "resnet18"  # dry run: the same transform on a small model
    ctx.save("settings", {"arch": arch, "batches": list(batches), "precision": "fp32", "input": "3x32x32, uniform random",
                          "timing": "CUDA events around each call" if ctx.cuda else "host clock"})
    models = {}
    for key, spec in (("dense", None), ("channels-50", "channels:0.5")):
        def build(key=key, spec=spec):
            model, entries = structural.build(arch, spec, 0)
            info = {"transform": spec, "params": sum(p.numel() for p in model.parameters()),
                    "macs": count_macs(model, (3, 32, 32))}
            models[key] = model.to(ctx.device).eval()
            return info
        ctx.guarded(f"model:{key}", build)
    for key, model in models.items():
        model.to(ctx.device)
        for b in batches:
            x = torch.rand(b, 3, 32, 32, device=ctx.device)

            def eager(model=model, x=x, b=b):
                with torch.inference_mode():
                    return _latency(ctx, lambda: model(x), b)
            ctx.guarded(f"latency:{key}:eager:b{b}", eager)
    for key, model in models.items():
        if ctx.dry:
            ctx.save(f"aoti:{key}", {"skipped": "dry run: an AOTInductor compile takes ~30 s per model on the CPU "
                                                "(tests/exporters/test_aoti.py covers the CPU path)"})
            continue

        def aoti(key=key, model=model) -> dict[str, Any]:
            from exporters.aoti import AotiRunner, export_aoti

            path = ctx.work / f"{arch}-{key}.pt2"
            res = export_aoti(model, path, input_shape=(3, 32, 32), precision="fp32", batch_sizes=list(batches),
                              device=str(ctx.device), force=True)
            ctx.runners[key] = AotiRunner(path, device=str(ctx.device), trust_program=True)  # compiled just above
            return {"compile_seconds": res.seconds, "file_bytes": res.file_bytes, "max_abs_diff": res.max_abs_diff,
                    "tolerance": res.tolerance, "batch_range": list(batches)}
        if ctx.guarded(f"aoti:{key}", aoti, need_s=60) is None:
            continue
        for b in batches:
            x = torch.rand(b, 3, 32, 32, device=ctx.device)

            def timed(key=key, x=x, b=b):
                loaded = ctx.runners[key].model  # the package itself on a CUDA tensor: no host copy timed
                with torch.inference_mode():
                    return _latency(ctx, lambda: loaded(x), b)
            ctx.guarded(f"latency:{key}:aoti:b{b}", timed)
    ctx.guarded("semi_structured", lambda: semi_structured(ctx), need_s=5)


def _two_four(model, keep: Callable[[str, Any], bool]) -> list[str]:
    """Impose 2:4 (the 2 largest magnitudes of every 4 inputs) on the Linear layers `keep` selects."""
    import torch

    from pruners.patterns import nm_eligible

    names = []
    with torch.no_grad():
        for name, m in model.named_modules():
            if isinstance(m, torch.nn.Linear) and m.in_features % 4 == 0 and keep(name, m):
                m.weight.mul_(nm_eligible(m.weight.abs(), 2, 4))
                names.append(name)
    return names


def semi_structured(ctx: PartContext) -> dict[str, Any]:
    """2:4 vs dense per wide Linear layer, fp16 and bf16, at a deployment and a large batch of rows."""
    import torch

    from compressor.models import create_model
    from exporters.aoti import semi_structured_speedup

    torch.manual_seed(0)
    vgg = create_model("vgg16_bn_fc4096", num_classes=10, in_chans=3)
    vit = create_model("vit_small_cifar", num_classes=10, in_chans=3)
    vit_b_mlp = torch.nn.Sequential(torch.nn.Linear(768, 3072), torch.nn.GELU(), torch.nn.Linear(3072, 768))
    workloads = {
        "vgg16_bn_fc4096 classifier": (vgg, _two_four(vgg, lambda n, m: m.out_features >= 1024)),
        "vit_small_cifar MLP (block 0)": (vit, _two_four(vit, lambda n, m: ".0.mlp." in f".{n}.")),
        "ViT-B/16-shaped MLP (768-3072-768)": (vit_b_mlp, _two_four(vit_b_mlp, lambda n, m: True)),
    }
    rows_of = (128, 2048)  # rows of the matmul: images (VGG) or tokens (ViT)
    out: dict[str, Any] = {"batch_rows": list(rows_of), "workloads": {}}
    if not ctx.cuda:
        out["unsupported"] = "no CUDA GPU: to_sparse_semi_structured needs one (layers selected and masked only)"
    for name, (model, layers) in workloads.items():
        entry = {"layers_2to4": layers, "runs": []}
        out["workloads"][name] = entry
        if not ctx.cuda:
            continue
        for precision in ("fp16", "bf16"):
            for rows in rows_of:
                try:
                    entry["runs"] += semi_structured_speedup(model, batch_size=rows, runs=3 if ctx.dry else 100,
                                                             precision=precision)
                except Exception as exc:  # e.g. no CUDA in a dry run: recorded, the other workloads go on
                    entry["runs"].append({"precision": precision, "batch_size": rows, "unsupported": error_line(exc)})
        ctx.save("semi_structured", out)
    return out
