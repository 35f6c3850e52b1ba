"""The experiment's report, from its results alone: results.json, Markdown tables, PNG charts."""
from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path
from typing import Mapping

import numpy as np

from pac_ros.experiment.config import EvalSection, ImproveSection


def write_report(results: dict, out: Path, report: str | Path | None = None) -> list[Path]:
    """``results.json``, ``results.md`` and the charts in ``out``; with ``report``, also that Markdown file,
    with copies of the charts and results.json in ``<report>_figures`` beside it (out is usually not versioned).
    Returns the files a reader opens: the JSON and the Markdown report(s)."""
    (out / "results.json").write_text(json.dumps(results, indent=1))
    figures = plot_results(results, out)
    (out / "results.md").write_text(render_markdown(results, figures, out))
    written = [out / "results.json", out / "results.md"]
    if report:
        report = Path(report)
        fig_dir = report.parent / f"{report.stem}_figures"
        fig_dir.mkdir(parents=True, exist_ok=True)
        copies = {k: Path(shutil.copy2(f, fig_dir / f.name)) for k, f in figures.items()}
        (fig_dir / "results.json").write_text(json.dumps(results, indent=1))
        report.write_text(render_markdown(results, copies, report.parent))
        written.append(report)
    return written


def plot_results(results: dict, out: Path) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figs = {}
    arms = {**results["arms"], **results.get("peers", {})}
    names = list(arms)
    fig, ax = plt.subplots(figsize=(1.4 + 1.1 * len(names), 3.4))
    rates = [100 * arms[a]["success_rate"] for a in names]
    err = [[100 * (arms[a]["success_rate"] - arms[a]["ci_low"]) for a in names],
           [100 * (arms[a]["ci_high"] - arms[a]["success_rate"]) for a in names]]
    colours = ["#888" if a == "bc" else "#48c" if a.startswith("d3rlpy") else "#2a7" for a in names]
    ax.bar(names, rates, yerr=err, capsize=4, color=colours)
    for i, a in enumerate(names):
        ax.scatter([i] * len(arms[a]["per_seed"]), [100 * p for p in arms[a]["per_seed"]], color="k", s=8, zorder=3)
    ax.axhline(100 * results["data"]["success_rate"], color="#c44", ls="--", lw=1, label="data")
    ax.set_ylabel("success (%)")
    ax.set_ylim(0, 118)  # room above 100% for the legend, clear of the seeds' dots
    ax.tick_params(axis="x", labelsize=7)
    plt.setp(ax.get_xticklabels(), rotation=25, ha="right", rotation_mode="anchor")
    ax.set_title("sim stacking, sub-optimal data")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    figs["bar"] = out / "success_bar.png"
    fig.savefig(figs["bar"], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 3.2))
    for a, rs in results["runs"].items():
        steps = sorted({p["step"] for r in rs for p in r["curve"]})
        mean = [100 * np.mean([p["success_rate"] for r in rs for p in r["curve"] if p["step"] == s]) for s in steps]
        ax.plot(steps, mean, marker="o", label=a)
    ax.set_xlabel("training step")
    ax.set_ylabel("success (%)")
    ax.legend(fontsize=8)
    ax.set_title("learning curves (mean over seeds)")
    fig.tight_layout()
    figs["curves"] = out / "learning_curves.png"
    fig.savefig(figs["curves"], dpi=110)
    plt.close(fig)

    if results["improve"]:
        fig, ax = plt.subplots(figsize=(4, 3.2))
        rr = results["improve"]
        ax.plot([r["round"] for r in rr], [100 * r["final"]["success_rate"] for r in rr], marker="o")
        ax.set_xlabel("self-improvement round")
        ax.set_ylabel("success (%)")
        ax.set_xticks([r["round"] for r in rr])
        fig.tight_layout()
        figs["improve"] = out / "self_improvement.png"
        fig.savefig(figs["improve"], dpi=110)
        plt.close(fig)
    return figs


def _over_seeds(s: dict) -> str:
    """The mean over training seeds with its t-interval, shown within [0, 1]; "-" for one seed."""
    if len(s["per_seed"]) < 2 or "seed_mean" not in s:
        return "-"
    return f"{_pct(s['seed_mean'])} ({_pct(max(0.0, s['seed_t_low']))} - {_pct(min(1.0, s['seed_t_high']))})"


def _variant_row(arm: str, variant: str, s: dict) -> str:
    """A row of the tables that set one arm's runs evaluated otherwise (decoding, weights) side by side."""
    return (f"| {arm} | {variant} | {_pct(s['success_rate'])} ({s['successes']}/{s['episodes']}) | "
            f"{_pct(s['ci_low'])} - {_pct(s['ci_high'])} | {', '.join(_pct(x) for x in s['per_seed'])} | "
            f"{_over_seeds(s)} |")


def _welch(a: dict, b: dict) -> tuple[float, float, float, str]:
    """Arm ``a`` against ``b`` over their seeds: the difference of the means, its 95% Welch interval, and
    whether ``a`` is below, above or not distinguishable."""
    from pac_ros.evaluate import welch_interval

    diff, lo, hi = welch_interval(a["per_seed"], b["per_seed"])
    return diff, lo, hi, "below" if hi < 0 else "above" if lo > 0 else "not distinguishable"


def _selection_lines(selection: dict, cfg: dict) -> list[str]:
    """The report's section on each arm's training budget chosen on held-out episodes."""
    ev, sel = cfg["eval"], cfg["eval"]["select"]
    lines = ["", "## Training budget chosen on held-out episodes", "",
             f"Every checkpoint step each run kept, with its {sel['weights']} weights, evaluated on {sel['episodes']} "
             f"held-out episodes (seeds {sel['seed']}..{sel['seed'] + sel['episodes'] - 1}, which no reported "
             "figure uses); the step with the most successes pooled over the training seeds (the earliest on a "
             "tie) is the arm's budget. Held out:", "",
             "| arm | step | success | 95% CI | per seed | mean over seeds (95% t) |",
             "| --- | --- | --- | --- | --- | --- |"]
    for a, chosen in selection.items():
        lines += [_variant_row(a, f"{step}" + (" (chosen)" if int(step) == chosen["step"] else ""), s)
                  for step, s in chosen["steps"].items()]
    lines += ["", f"The chosen step on the report's episodes (seeds {ev['seed']}..{ev['seed'] + ev['episodes'] - 1}):",
              "", "| arm | step | success | 95% CI | per seed | mean over seeds (95% t) |",
              "| --- | --- | --- | --- | --- | --- |"]
    lines += [_variant_row(a, str(chosen["step"]), chosen["report"]) for a, chosen in selection.items()]
    arms = list(selection)
    pairs = [(a, b) for i, a in enumerate(arms) for b in arms[i + 1:]
             if min(len(selection[a]["report"]["per_seed"]), len(selection[b]["report"]["per_seed"])) >= 2]
    if pairs:
        lines += ["", "Each at its chosen budget, the difference of the means over seeds with its 95% Welch "
                  "interval:", ""]
    for a, b in pairs:
        sa, sb = selection[a]["report"], selection[b]["report"]
        diff, lo, hi, verdict = _welch(sa, sb)
        lines.append(f"- {a} ({selection[a]['step']} steps) against {b} ({selection[b]['step']} steps): "
                     f"{100 * diff:+.1f} points ({100 * lo:+.1f} to {100 * hi:+.1f}: {verdict}); pooled "
                     f"{100 * (sa['success_rate'] - sb['success_rate']):+.1f} points")
    return lines


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _compute_s(results: dict) -> float:
    runs = [r for rs in results["runs"].values() for r in rs]
    return sum(r["train_s"] + r["final"].get("eval_s", 0.0) for r in runs) + \
        sum(p["train_s"] * len(p["per_seed"]) for p in results.get("peers", {}).values())


def render_markdown(results: dict, figures: Mapping[str, Path], rel_to: Path) -> str:
    data, arms, cfg = results["data"], results["arms"], results["config"]

    def link(p: Path) -> str:
        return os.path.relpath(Path(p).resolve(), Path(rel_to).resolve())

    lines = ["# Results: PAC vs BC on sub-optimal stacking data", "",
             "Generated by `pac-ros experiment` (pac_ros/experiment/); every number below comes from "
             "`results.json` of the same run.", "",
             "## Data", "",
             f"- `{data['root']}`: {data['episodes']} episodes, {data['steps']} steps, "
             f"success {_pct(data['success_rate'])}; fingerprint `{data['fingerprint']}`",
             f"- collected with `pac-ros collect --quality {cfg['data']['quality']} --episodes "
             f"{cfg['data']['episodes']} --seed {cfg['data']['seed']}" +
             (f" --end-after-attempt {cfg['data']['end_after_attempt']}"
              if cfg['data'].get('end_after_attempt') else "")
             + "`; by expert quality: " +
             ", ".join(f"{q} {v['episodes']} eps ({_pct(v['success_rate'])})" for q, v in data["by_quality"].items()),
             "", "## Success over seeded sim episodes", "",
             f"Each run: {cfg['steps']} training steps (unless the arm names its own `steps`), "
             f"preset from `{cfg['train_config']}` with model overrides "
             f"`{cfg['model']}` and learner overrides `{cfg['learner']}`; evaluated on {cfg['eval']['episodes']} "
             f"sim episodes (seeds {cfg['eval']['seed']}..{cfg['eval']['seed'] + cfg['eval']['episodes'] - 1}, "
             f"{cfg['eval']['decoding']} decoding). Pooled over training seeds ({cfg['seeds']} unless the arm "
             "names its own): pooled success with its 95% Wilson interval, and the mean over seeds with its "
             "95% t-interval (the spread between training seeds; a single seed has none).",
             "", "| arm | learner overrides | success | 95% CI | per seed | mean over seeds (95% t) | mean return | "
             "mean length | train s/run |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for a, s in arms.items():
        seeds = _over_seeds(s)
        lines.append(f"| {a} | `{cfg['arms'][a]}` | {_pct(s['success_rate'])} ({s['successes']}/{s['episodes']}) | "
                     f"{_pct(s['ci_low'])} - {_pct(s['ci_high'])} | "
                     f"{', '.join(_pct(p) for p in s['per_seed'])} | {seeds} | {s['mean_return']:.3f} | "
                     f"{s['mean_length']:.1f} | {s['train_s']:.0f} |")
    for a, s in results.get("peers", {}).items():
        lines.append(f"| {a} | {results['config']['peers']['steps']} steps, batch "
                     f"{results['config']['peers']['batch_size']}, state features, no images | "
                     f"{_pct(s['success_rate'])} ({s['successes']}/{s['episodes']}) | "
                     f"{_pct(s['ci_low'])} - {_pct(s['ci_high'])} | {', '.join(_pct(p) for p in s['per_seed'])} | - | "
                     f"{s['mean_return']:.3f} | {s['mean_length']:.1f} | {s['train_s']:.0f} |")
    if "bc" in arms:
        bc = arms["bc"]
        lines += ["", "Against BC:", ""]
        for a, s in arms.items():
            if a == "bc":
                continue
            ratio = s["success_rate"] / bc["success_rate"] if bc["success_rate"] > 0 else \
                (math.inf if s["success_rate"] > 0 else math.nan)
            apart = s["ci_low"] > bc["ci_high"]
            lines.append(f"- {a}: {_pct(s['success_rate'])} vs {_pct(bc['success_rate'])}: "
                         f"{'+' if s['success_rate'] >= bc['success_rate'] else ''}"
                         f"{100 * (s['success_rate'] - bc['success_rate']):.1f} points, ratio "
                         f"{'n/a (BC at 0%)' if not math.isfinite(ratio) else f'{ratio:.2f}x'}, intervals "
                         f"{'do not overlap' if apart else 'overlap'}")
    if "bc_success" in arms and len(arms["bc_success"]["per_seed"]) >= 2:
        ref = arms["bc_success"]
        lines += ["", "Against success-filtered BC (bc_success): the difference of the means over seeds with its 95% "
                  "Welch interval (the seeds' spreads, unequal), and the pooled difference:", ""]
        for a, s in arms.items():
            if a in ("bc", "bc_success") or len(s["per_seed"]) < 2:
                continue
            diff, lo, hi, verdict = _welch(s, ref)
            lines.append(f"- {a}: {100 * diff:+.1f} points over seeds ({100 * lo:+.1f} to {100 * hi:+.1f}, "
                         f"{len(s['per_seed'])} vs {len(ref['per_seed'])} seeds: {verdict}); pooled "
                         f"{100 * (s['success_rate'] - ref['success_rate']):+.1f} points")
    peers = results.get("peers", {})
    if peers:
        best = max(peers, key=lambda a: peers[a]["success_rate"])
        lines += ["", "Against the best d3rlpy peer (" + best + f", {_pct(peers[best]['success_rate'])}):", ""]
        for a, s in arms.items():
            if a != "bc":
                lines.append(f"- {a}: {100 * (s['success_rate'] - peers[best]['success_rate']):+.1f} points, "
                             f"intervals {'do not overlap' if s['ci_low'] > peers[best]['ci_high'] else 'overlap'}")
    lines += ["", f"![success]({link(figures['bar'])})", f"![curves]({link(figures['curves'])})", "",
              "## Critic diagnostics (each arm's first training seed)", "",
              "Q(s, a) of the data's own actions against the observed discounted return from that step "
              "(Monte Carlo to the episode's end), on sampled transitions of the training data.", "",
              "| arm | mean Q | mean observed return | correlation | mean Q, successful episodes | "
              "mean Q, failed episodes | policy entropy (nats, all dims) | final critic loss | final ESS of w |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for a, d in results["diagnostics"].items():
        tm = results["runs"][a][0].get("train_metrics", {})
        ess = tm.get("priority_ess", tm.get("ess", float("nan")))  # resampled arms: the draw's, over the data
        lines.append(f"| {a} | {d['mean_q']:.3f} | {d['mean_return']:.3f} | {d['correlation']:.2f} | "
                     f"{d.get('q_success', float('nan')):.3f} | {d.get('q_failure', float('nan')):.3f} | "
                     f"{d['policy_entropy']:.2f} | {tm.get('critic_loss', float('nan')):.3f} | {ess:.2f} |")
    ev = cfg["eval"]
    if results.get("decodings"):
        lines += ["", "## Decoding", "",
                  f"The same checkpoints and episodes (seeds {ev['seed']}..{ev['seed'] + ev['episodes'] - 1}), "
                  "decoded otherwise: greedy takes each dimension's most likely bin, mean the expectation over "
                  "the bins, q_filter lets the critic pick among the greedy action and samples.", "",
                  "| arm | decoding | success | 95% CI | per seed | mean over seeds (95% t) |",
                  "| --- | --- | --- | --- | --- | --- |"]
        for a, by in results["decodings"].items():
            lines += [_variant_row(a, d, s) for d, s in {ev["decoding"]: results["arms"][a], **by}.items()]
    if results.get("target_weights"):
        lines += ["", "## Target-network weights", "",
                  f"The same runs and episodes (seeds {ev['seed']}..{ev['seed'] + ev['episodes'] - 1}), the final "
                  "checkpoint's target-network weights in place of its online ones: under `target_update: polyak` "
                  "the online weights' moving average over about the last 1/τ steps (`pac-ros export --weights "
                  "target`, kept as each run's `target/`).", "",
                  "| arm | weights | success | 95% CI | per seed | mean over seeds (95% t) |",
                  "| --- | --- | --- | --- | --- | --- |"]
        for a, s in results["target_weights"].items():
            lines += [_variant_row(a, "online", results["arms"][a]), _variant_row(a, "target", s)]
    if results.get("selection"):
        lines += _selection_lines(results["selection"], cfg)
    if results["improve"]:
        imp = cfg["improve"]
        rounds_ev = ImproveSection(**imp).evaluation(EvalSection(**ev))
        deployed = "through the node graph: bridge + policy node + recorder" if imp["through_ros"] else "in-process"
        budget = (f"{imp['steps']} steps" if imp.get("steps_scale", "fixed") == "fixed" else
                  f"{imp['steps']} steps × (the round's episodes / the original data's)")
        lines += ["", "## Self-improvement", "",
                  f"Each round deploys the last checkpoint ({deployed}), "
                  f"records {imp['episodes']} of its own episodes ({imp.get('decoding') or ev['decoding']} "
                  f"decoding), adds them to the data and fine-tunes {budget} (learner overrides "
                  f"`{imp['learner']}`). Every round, round 0 included, is evaluated on "
                  f"{rounds_ev.episodes} episodes from seed {rounds_ev.seed}.", "",
                  "| round | success | 95% CI | own episodes' success | dataset episodes | fine-tuning steps |",
                  "| --- | --- | --- | --- | --- | --- |"]
        for r in results["improve"]:
            f = r["final"]
            own = _pct(r["own"]["success_rate"]) if "own" in r else "-"
            steps = r.get("steps", imp["steps"]) if r["round"] else "-"
            lines.append(f"| {r['round']} | {_pct(f['success_rate'])} | {_pct(f['success_ci_low'])} - "
                         f"{_pct(f['success_ci_high'])} | {own} | {r['data']['episodes']} | {steps} |")
        if "improve" in figures:
            lines += ["", f"![self-improvement]({link(figures['improve'])})"]
    if cfg.get("notes"):
        lines += ["", "## Notes", "", cfg["notes"].strip()]
    lines += ["", "## Reproduce", "", *(f"    {c}" for c in results["commands"]), "",
              f"Wall time of this call: {results['wall_s'] / 60:.1f} min (cached runs count as 0); training and "
              f"evaluation of every run and peer it reports: {_compute_s(results) / 60:.1f} min.", ""]
    return "\n".join(lines)

