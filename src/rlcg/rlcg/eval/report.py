"""The transfer benchmark's report: a Markdown table like the paper's Table 1, and figures."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rlcg.gan.methods import GAN_METHODS

# The paper's Table 1 (Robot 1, real grasp success without real RL data), for orientation only:
# their robot, objects and data differ from this benchmark's.
PAPER_TABLE_1 = {"sim-only": 0.21, "randomized-sim": 0.37, "gan": 0.29, "cyclegan": 0.61, "rl-cyclegan": 0.70}


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def markdown(report: dict) -> str:
    s = report["settings"]
    prov = report["provenance"]
    lines = [
        f"# Sim-to-real transfer: {report['real_domain']}",
        "",
        f"Command: `{prov['command']}`  ",
        f"Seed {prov['seed']}, commit `{prov['commit']}`, {prov['time']}, {report['seconds'] / 60:.1f} min.  ",
        f"Preset `{report['preset']}`: {s['sim_episodes']} sim, {s['randomized_episodes']} randomized and "
        f"{s['real_episodes']} real episodes (scripted policy); Q steps {s['q_steps']} (batch {s['q_batch']}), "
        f"GAN steps {s['gan_steps']} (batch {s['gan_batch']}); {s['eval_episodes']} evaluation episodes per "
        f"method on held-out objects, evaluation seed {report['eval_seed']}.",
        "",
    ]
    if report.get("sim_only_policy"):
        lines += [
            f"Sim-only policy given, not trained here: `{report['sim_only_policy']}`; randomized-sim and the GAN "
            f"methods start from it, and the sim data add {s['sim_episodes']} of its own episodes "
            f"(exploration {s['onpolicy_explore']}).",
            "",
        ]
    lines += [
        f"| method | success in {report['real_domain']} | 95% interval | paper, Table 1 (Robot 1) "
        "| Q's AUC on real grasps* |",
        "|---|---|---|---|---|",
    ]
    offline_data = None
    for method, r in report["methods"].items():
        lo, hi = r["ci95"]
        offline = r.get("offline") or {}
        offline_data = offline.get("data", offline_data)
        auc = f"{offline['auc']:.3f}" if offline.get("auc") is not None else "n/a"
        lines.append(
            f"| {method} | {_pct(r['success_rate'])} | [{_pct(lo)}, {_pct(hi)}] "
            f"| {_pct(PAPER_TABLE_1[method])} | {auc} |"
        )
    if offline_data:
        lines += [
            "",
            f"\\* ROC AUC of the policy's Q on the recorded outcomes of `{offline_data}` (0.5: blind; "
            "`rlcg eval-data`). Those images are GAN training data, their outcomes are not used in training.",
        ]
    lines += [
        "",
        "Same policies in `sim` (the architecture's own success without a domain gap):",
        "",
        "| policy | success in sim | 95% interval |",
        "|---|---|---|",
    ]
    for method, r in report["in_sim"].items():
        lines.append(f"| {method} | {_pct(r['success_rate'])} | [{_pct(r['ci95'][0])}, {_pct(r['ci95'][1])}] |")
    if report.get("real_rl_curve"):
        lines += [
            "",
            "With real data used for RL too (the paper's Table 2 analogue):",
            "",
            "| real episodes | real-only | rl-cyclegan + real RL |",
            "|---|---|---|",
        ]
        for p in report["real_rl_curve"]:
            a, b = p["real-only"], p["rl-cyclegan"]
            lines.append(
                f"| {p['real_episodes']} | {_pct(a['success_rate'])} [{_pct(a['ci95'][0])}, "
                f"{_pct(a['ci95'][1])}] | {_pct(b['success_rate'])} [{_pct(b['ci95'][0])}, "
                f"{_pct(b['ci95'][1])}] |"
            )
    lines += ["", "![success](success.png)", "", "![translations](translations.png)", ""]
    if report.get("real_rl_curve"):
        lines += ["![real RL curve](real_rl_curve.png)", ""]
    return "\n".join(lines)


def success_figure(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(report["methods"])
    rates = np.array([report["methods"][m]["success_rate"] for m in methods])
    lo = np.array([report["methods"][m]["ci95"][0] for m in methods])
    hi = np.array([report["methods"][m]["ci95"][1] for m in methods])
    fig, ax = plt.subplots(figsize=(6.5, 3.6), dpi=120)
    ax.bar(
        methods,
        100 * rates,
        yerr=[100 * np.maximum(rates - lo, 0), 100 * np.maximum(hi - rates, 0)],
        capsize=4,
        color=["#9e9e9e", "#b0bec5", "#90caf9", "#42a5f5", "#1565c0"][: len(methods)],
    )
    if "sim-only" in report.get("in_sim", {}):
        ax.axhline(100 * report["in_sim"]["sim-only"]["success_rate"], ls="--", c="k", lw=1, label="sim-only in sim")
        ax.legend(loc="upper left", frameon=False)
    ax.set_ylabel(f"success in {report['real_domain']} (%)")
    ax.set_ylim(0, 100)
    ax.set_title("Grasp success with 95% Wilson intervals")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def curve_figure(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = report["real_rl_curve"]
    n = [p["real_episodes"] for p in pts]
    fig, ax = plt.subplots(figsize=(5.5, 4.0), dpi=120)
    for key, label, style in (("real-only", "real-only", "o--"), ("rl-cyclegan", "rl-cyclegan + real RL data", "s-")):
        r = np.array([p[key]["success_rate"] for p in pts])
        lo = np.array([p[key]["ci95"][0] for p in pts])
        hi = np.array([p[key]["ci95"][1] for p in pts])
        yerr = [100 * np.maximum(r - lo, 0), 100 * np.maximum(hi - r, 0)]
        ax.errorbar(n, 100 * r, yerr=yerr, fmt=style, capsize=3, label=label)
    # what the real RL data is measured against: rl-cyclegan without it, and the sim policy in sim
    references = (
        (report.get("methods", {}).get("rl-cyclegan"), "rl-cyclegan, no real RL data", ":"),
        (report.get("in_sim", {}).get("sim-only"), "sim-only in sim", "--"),
    )
    for ref, label, ls in references:
        if ref is not None:
            ax.axhline(100 * ref["success_rate"], ls=ls, c="k", lw=1, label=label)
    ax.set_xlabel("real episodes")
    ax.set_ylabel(f"success in {report['real_domain']} (%)")
    ax.set_ylim(0, 100)
    ax.legend(frameon=False, fontsize=8, ncol=2, loc="lower center", bbox_to_anchor=(0.5, 1.0))
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def translations_figure(runs: dict[str, Path], sim_dir: Path, real_dir: Path, path: Path, n: int = 4) -> None:
    """Rows: sim images x, then G(x) of each GAN method; last row real images, for comparison."""
    import torch
    from PIL import Image

    from rlcg.data.dataset import TransitionDataset
    from rlcg.gan.trainer import load_generator

    sim = TransitionDataset.open(sim_dir)
    real = TransitionDataset.open(real_dir)
    xs = np.stack([sim.images[i] for i in np.linspace(0, len(sim) - 1, n).astype(int)])
    ys = np.stack([real.images[i] for i in np.linspace(0, len(real) - 1, n).astype(int)])
    rows = [xs]
    for run in runs.values():
        g = load_generator(run)
        with torch.no_grad():
            t = torch.as_tensor(xs).permute(0, 3, 1, 2).float() / 127.5 - 1.0
            out = ((g(t).clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
        rows.append(out)
    rows.append(ys)
    h, w = xs.shape[1:3]
    scale = max(1, 96 // w)
    pad = 4
    label_w = 110
    canvas = Image.new("RGB", (label_w + n * (w * scale + pad), len(rows) * (h * scale + pad)), "white")
    from PIL import ImageDraw

    draw = ImageDraw.Draw(canvas)
    labels = ["sim x", *[f"{m}: G(x)" for m in runs], "real y"]
    for r, (row, label) in enumerate(zip(rows, labels)):
        top = r * (h * scale + pad)
        draw.text((4, top + h * scale // 2 - 6), label, fill=(0, 0, 0))
        for c, img in enumerate(row):
            big = Image.fromarray(img).resize((w * scale, h * scale), Image.NEAREST)
            canvas.paste(big, (label_w + c * (w * scale + pad), top))
    canvas.save(path)


def write_transfer_report(out: Path, report: dict, policies: dict[str, Path], sim_dir: Path, real_dir: Path) -> None:
    success_figure(report, out / "success.png")
    if report.get("real_rl_curve"):
        curve_figure(report, out / "real_rl_curve.png")
    gan_runs = {m: policies[m].parent for m in GAN_METHODS if m in policies}
    translations_figure(gan_runs, sim_dir, real_dir, out / "translations.png")
    (out / "report.md").write_text(markdown(report))
