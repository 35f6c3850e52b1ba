"""PAC objective pieces (paper sec. 3; the equations are in docs/method.md)."""
from __future__ import annotations

import math

import torch


def categorical_projection(probs: torch.Tensor, reward: torch.Tensor, discount: torch.Tensor,
                           support: torch.Tensor) -> torch.Tensor:
    """C51 projection of r + discount·z (z ~ probs) onto the fixed support.

    probs [B,n] (target return distribution at s'), reward [B], discount [B] (γ^n·(1-terminal)).
    Mass beyond the support's ends is clipped onto the end atoms. Returns [B,n].
    """
    n = support.shape[0]
    sup = support.double()
    vmin, vmax = sup[0], sup[-1]
    dz = (vmax - vmin) / (n - 1)
    tz = (reward.double()[:, None] + discount.double()[:, None] * sup[None]).clamp(vmin, vmax)
    b = (tz - vmin) / dz
    r = b.round()
    b = torch.where((b - r).abs() < 1e-6, r, b)  # exact on atoms despite rounding error
    lo, hi = b.floor(), b.ceil()
    w_lo = torch.where(lo == hi, torch.ones_like(b), hi - b)
    w_hi = b - lo
    p = probs.double()
    out = torch.zeros_like(p)
    out.scatter_add_(1, lo.long().clamp(0, n - 1), p * w_lo)
    out.scatter_add_(1, hi.long().clamp(0, n - 1), p * w_hi)
    return out.to(probs.dtype)


def critic_loss(q_logits: torch.Tensor, target_probs: torch.Tensor) -> torch.Tensor:
    """L_Q = E_D[CE(Γ_θ', p_θ(·|s,a))] (paper sec. 3, distributional TD; = KL up to a constant)."""
    return -(target_probs.detach() * q_logits.float().log_softmax(-1)).sum(-1).mean()


def improvement_weights(q: torch.Tensor, eta: float) -> torch.Tensor:
    """w_j = softmax_j(Q_θ(s,a'_j)/η), stop-gradient (MPO-style non-parametric π_imp, paper sec. 3)."""
    return (q.detach().float() / eta).softmax(-1)


def data_improvement_weights(q_data: torch.Tensor, q_samples: torch.Tensor, eta: float,
                             max_weight: float = 20.0, baseline: str = "advantage",
                             value_cap: float | None = None) -> torch.Tensor:
    """Weights of the data's own actions, normalised to mean 1 over the batch (ours; in-sample
    estimates of the improvement step, so only actions the data holds are imitated). q_data [B], q_samples [B,N].

    advantage: π_imp ∝ π_θ'·exp(Q/η) per state, for a policy near the data's:
        w_i = exp((Q(s_i,a_i) − V_η(s_i))/η), V_η(s) = η·log mean_j exp(Q(s,a'_j)/η), clipped at max_weight;
        flat Q gives exactly BC (AWR/CRR-style).
    value: w_i ∝ exp(Q(s_i,a_i)/η) across the batch: also moves the imitated states toward those the
        improved policy visits; states whose every action fails (Q ≈ V ≈ 0) stop being imitated;
        ``value_cap``: Q above it counts as it.
    """
    q = q_data.detach().float()
    if baseline == "value":
        if value_cap is not None:
            q = q.clamp(max=value_cap)
        w = ((q - q.max()) / eta).exp()
    else:
        w = ((q - soft_value(q_samples.detach(), eta)) / eta).clamp(max=math.log(max_weight)).exp()
    return w / w.mean().clamp_min(1e-12)


def soft_value(q_samples: torch.Tensor, eta: float) -> torch.Tensor:
    """V_η(s) = η·log mean_j exp(Q(s, a'_j)/η) over the samples' last axis: the log-normaliser of
    π_imp ∝ π_ref·exp(Q/η), so Q − V_η is the log of π_imp/π_ref at the sampled action."""
    q = q_samples.float()
    return eta * (torch.logsumexp(q / eta, -1) - math.log(q.shape[-1]))


def policy_loss(logp_data: torch.Tensor, logp_samples: torch.Tensor, weights: torch.Tensor,
                alpha: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """L_π = α·E_D[−log π(a|s)] + (1−α)·E_s[−Σ_j w_j log π(a'_j|s)] (paper sec. 3; docs/method.md).

    logp_data [B], logp_samples [B,N], weights [B,N]. α=1 returns exactly the BC NLL.
    Returns (loss, bc_nll, improvement_loss).
    """
    bc = -logp_data.mean()
    imp = -(weights.detach() * logp_samples).sum(-1).mean()
    if alpha >= 1.0:
        return bc, bc, imp.detach()
    return alpha * bc + (1.0 - alpha) * imp, bc, imp


def temperature_dual(q: torch.Tensor, log_eta: torch.Tensor, epsilon: float) -> torch.Tensor:
    """MPO dual g(η) = η·ε + η·E_s[log (1/N) Σ_j exp(Q(s,a'_j)/η)]; minimising it over η makes
    KL(π_imp ‖ π_θ') ≈ ε (Abdolmaleki et al. 2018, eq. 4; docs/method.md). Q is stop-gradient."""
    eta = log_eta.exp()
    n = q.shape[-1]
    lse = torch.logsumexp(q.detach().float() / eta, dim=-1) - math.log(n)
    return eta * epsilon + eta * lse.mean()


def kl_to_uniform(w: torch.Tensor) -> torch.Tensor:
    """KL(w ‖ uniform) over the last axis: the KL of the sample-based π_imp from π_θ'."""
    n = w.shape[-1]
    return (w * (w.clamp_min(1e-12) * n).log()).sum(-1)


def weight_stats(w: torch.Tensor) -> dict[str, torch.Tensor]:
    """Effective sample size (fraction, in [1/N, 1]) and KL to uniform of improvement weights:
    w [B,N] per state's samples, or [B,1] one distribution over the batch (the data's actions)."""
    if w.shape[-1] == 1:
        w = w.T
    p = w.float() / w.float().sum(-1, keepdim=True).clamp_min(1e-12)
    return {"ess": (1.0 / (p ** 2).sum(-1)).mean() / p.shape[-1], "kl_imp": kl_to_uniform(p).mean()}
