"""The PAC learner: online + target networks, one optimiser, one step per batch."""
from __future__ import annotations

import copy
import math
from contextlib import nullcontext
from typing import Any, Mapping

import numpy as np
import torch
import torch.distributed as dist

from ..model import PACModel
from .augment import augment_images
from .config import LearnerConfig
from .losses import (
    categorical_projection,
    critic_loss,
    data_improvement_weights,
    improvement_weights,
    policy_loss,
    soft_value,
    temperature_dual,
    weight_stats,
)


def cat_obs(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict:
    """Concatenate two observation batches along the batch axis."""
    out = {}
    for k, v in a.items():
        if isinstance(v, Mapping):
            out[k] = {c: torch.cat([v[c], b[k][c]]) for c in v}
        elif v is not None:
            out[k] = torch.cat([v, b[k]])
    return out


def obs_to(obs: Mapping[str, Any], device: torch.device) -> dict:
    return {k: ({c: t.to(device, non_blocking=True) for c, t in v.items()} if isinstance(v, Mapping)
                else v.to(device, non_blocking=True)) for k, v in obs.items() if v is not None}


class Learner:
    """Holds θ (online) and θ' (target) and the AdamW optimiser; ``step(batch)`` trains once.

    Under torch.distributed (torchrun) gradients are averaged across ranks after
    backward (data parallel); every rank holds identical parameters.
    """

    def __init__(self, model: PACModel, config: LearnerConfig, device: str | torch.device = "cpu"):
        self.config = config
        self.device = torch.device(device)
        self.model = model.to(self.device)
        self.target = copy.deepcopy(self.model).requires_grad_(False).eval()
        self.clip_groups = [list(self.model.parameters())]  # clipped together, or each side on its own:
        if not config.critic_trains_encoder:
            critic = self.model.critic_parameters()
            ids = {id(p) for p in critic}
            self.clip_groups = [[p for p in self.clip_groups[0] if id(p) not in ids], critic]
        # weight decay on Linear/Conv weights only (ours)
        mats = {id(mod.weight) for mod in self.model.modules() if isinstance(mod, (torch.nn.Linear, torch.nn.Conv2d))}
        decay = [p for p in self.model.parameters() if id(p) in mats]
        no_decay = [p for p in self.model.parameters() if id(p) not in mats]
        groups = [{"params": decay, "weight_decay": config.weight_decay, "base_lr": config.lr},
                  {"params": no_decay, "weight_decay": 0.0, "base_lr": config.lr}]
        # log η: learned by the MPO dual when eta_kl is set, else a constant
        self.log_eta = torch.tensor(math.log(config.eta), device=self.device,
                                    requires_grad=config.eta_kl is not None)
        if config.eta_kl is not None:
            groups.append({"params": [self.log_eta], "weight_decay": 0.0, "base_lr": config.eta_lr})
        self.optimizer = torch.optim.AdamW(groups, lr=config.lr_at(0), betas=config.adam_betas)
        self.step_count = 0
        self.distributed = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        if self.distributed:
            for p in self.model.parameters():
                dist.broadcast(p.data, 0)
            self.hard_update()

    # ---- target network ----------------------------------------------------------
    @torch.no_grad()
    def hard_update(self) -> None:
        """θ' ← θ, buffers included: the input standardisation is part of what the target computes."""
        for t, p in zip(self.target.parameters(), self.model.parameters()):
            t.copy_(p)
        for t, b in zip(self.target.buffers(), self.model.buffers()):
            t.copy_(b)

    @torch.no_grad()
    def polyak_update(self, tau: float) -> None:
        tp, op = list(self.target.parameters()), list(self.model.parameters())
        torch._foreach_lerp_(tp, op, tau)

    def update_target(self) -> None:
        """Called after each optimiser step (step_count already incremented)."""
        if self.config.target_update == "polyak":
            self.polyak_update(self.config.tau)
        elif self.step_count % self.config.target_period == 0:
            self.hard_update()

    # ---- losses -------------------------------------------------------------------
    def _autocast(self):
        amp = self.config.amp
        if self.device.type == "cuda" and amp in ("auto", "bf16") and torch.cuda.is_bf16_supported():
            return torch.autocast("cuda", dtype=torch.bfloat16)
        if amp == "bf16" and self.device.type == "cpu":
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return nullcontext()

    def compute_losses(self, batch: Mapping[str, Any], alpha: float,
                       actor: Mapping[str, Any] | None = None, policy_learns: bool = True,
                       bc: Mapping[str, Any] | None = None) -> tuple[dict, dict]:
        """({'total','policy','critic'} loss tensors, detached metrics). ``actor``: the improvement
        term's own batch, already drawn ∝ exp(Q/η) (actor_batch: value), imitated with equal weights.
        ``bc``: the behaviour-cloning term's own batch (bc_data: success) in place of ``batch``.
        ``policy_learns`` false (the critic's warm-up): the policy loss is reported but not trained."""
        cfg, m, tgt = self.config, self.model, self.target
        obs, next_obs = batch["obs"], batch["next_obs"]
        action = batch["action"].float()
        reward, discount = batch["reward"].float(), batch["discount"].float()
        B = action.shape[0]
        with self._autocast():
            lat = m.encode(obs)
            c_lat = lat if cfg.critic_trains_encoder else lat.detach()  # what the critic's losses reach
            with torch.no_grad():  # θ' encodes s and s' in one pass
                t_lat, t_next = tgt.encode(cat_obs(obs, next_obs)).split(B)

            # critic: Γ_θ' = projection of r + γ(1-term)·z, a' ~ π_θ'(·|s') (sec. 3)
            with torch.no_grad():
                if cfg.critic_target == "data":  # the data's own action at s': nothing unseen is bootstrapped
                    a_next = batch["next_action"].float()[:, None]
                else:
                    a_next = tgt.sample_actions(tgt.policy_logits(t_next), cfg.n_target_samples)
                p_next = tgt.q_logits(t_next, a_next).float().softmax(-1).mean(1)
                target = categorical_projection(p_next, reward, discount, m.value_support)
                tz = reward[:, None] + discount[:, None] * m.value_support
                clipped = (p_next * ((tz > m.value_support[-1]) | (tz < m.value_support[0]))).sum(-1).mean()
            q_logits = m.q_logits(c_lat, action[:, None])[:, 0]
            l_q = critic_loss(q_logits, target)

            # actor: α·BC + (1-α)·KL(π_imp ‖ π_θ), π_imp ∝ π_θ'·exp(Q_θ/η) (sec. 3)
            logits = m.policy_logits(lat)
            with torch.no_grad():  # a'_j ~ π_θ' (paper), or ~ π_θ: uniform weights then pull nowhere
                ref = tgt.policy_logits(t_lat) if cfg.improvement_reference == "target" else logits.detach()
                a_s = m.sample_actions(ref, cfg.n_action_samples)
            # Q of the samples: with gradient only for the conservative term below
            q_pi = m.q_value(c_lat, a_s) if cfg.conservative > 0 else None
            with torch.no_grad():
                q_s = q_pi.detach() if q_pi is not None else m.q_value(lat, a_s)
            logp_data = m.log_prob(logits, action[:, None])[:, 0]
            qp = q_logits.float().softmax(-1)  # p(z | s, a_data): Q of the data's actions, and metrics
            q_data = (qp * m.value_support).sum(-1)
            eta = float(self.log_eta.detach().exp())
            if actor is not None:  # resampled by value: π_imp's samples themselves
                a_logits = m.policy_logits(m.encode(actor["obs"]))
                logp_imp = m.log_prob(a_logits, actor["action"].float()[:, None])
                w = torch.ones_like(logp_imp)
            elif cfg.improvement_actions == "data":  # in-sample: only actions the data holds are imitated
                w = data_improvement_weights(q_data, q_s, eta, baseline=cfg.data_weighting,
                                             value_cap=cfg.value_cap)[:, None]
                logp_imp = logp_data[:, None]
            else:
                w, logp_imp = improvement_weights(q_s, eta), m.log_prob(logits, a_s)
            logp_bc = logp_data
            if bc is not None:  # the behaviour prior's own data
                logp_bc = m.log_prob(m.policy_logits(m.encode(bc["obs"])), bc["action"].float()[:, None])[:, 0]
            l_pi, bc_nll, imp = policy_loss(logp_bc, logp_imp, w, alpha)
            sides = {"policy": l_pi} if policy_learns else {}  # the terms whose gradients may be clipped apart
            sides["critic"] = cfg.beta * l_q
            l_aux = torch.zeros((), device=self.device)
            if m.aux_head is not None:  # privileged training-time target: where the blocks are
                truth = m.standardize_features(obs["features"])
                l_aux = torch.nn.functional.smooth_l1_loss(m.aux_prediction(lat).float(), truth)
                sides["aux"] = cfg.aux_weight * l_aux
            gap = torch.zeros((), device=self.device)
            if cfg.conservative > 0:  # CQL-style: the policy's own actions may not out-value the data's
                gap = q_pi.float().mean() - q_data.mean()
                sides["critic"] = sides["critic"] + cfg.conservative * gap
            if cfg.eta_kl is not None:
                sides["temperature"] = temperature_dual(q_s, self.log_eta, cfg.eta_kl)
            total = sum(sides.values())

        with torch.no_grad():
            qp = qp.detach()
            metrics = {
                "loss": total.detach(), "policy_loss": l_pi.detach(), "critic_loss": l_q.detach(),
                "aux_loss": l_aux.detach(),
                "bc_nll": bc_nll.detach(), "improvement_loss": imp.detach(),
                "q_mean": q_data.detach().mean(),
                "q_entropy": -(qp * qp.clamp_min(1e-12).log()).sum(-1).mean(),
                "q_samples_mean": q_s.mean(), "q_samples_std": q_s.std(1).mean(), "q_gap": gap.detach(),
                "target_q_mean": (target * m.value_support).sum(-1).mean(),
                "target_clip_frac": clipped,
                "policy_entropy": PACModel.entropy(logits).sum(-1).mean(),
                "eta": self.log_eta.detach().exp(), **weight_stats(w),
            }
        return {"total": total, "policy": l_pi, "critic": l_q, "sides": sides}, metrics

    # ---- one step -----------------------------------------------------------------
    def step(self, batch: Mapping[str, Any], actor: Mapping[str, Any] | None = None,
             bc: Mapping[str, Any] | None = None) -> dict[str, float]:
        """One update on ``batch``, with the improvement term's (``actor``) and the behaviour-cloning
        term's (``bc``) own batches where the config draws them."""
        batch = self._augmented(self.to_device(batch), ("obs", "next_obs"))
        actor = None if actor is None else self._augmented(self.to_device(actor), ("obs",))
        bc = None if bc is None else self._augmented(self.to_device(bc), ("obs",))
        self.model.train()
        alpha = self.config.alpha(self.step_count)
        warm = self.config.lr_scale(self.step_count)
        for g in self.optimizer.param_groups:
            g["lr"] = g["base_lr"] * warm
        lr = self.config.lr * warm
        learns = self.config.policy_learns(self.step_count)
        losses, metrics = self.compute_losses(batch, alpha, actor, learns, bc)
        if self.config.grad_clip_by == "loss":
            side_norms = self._backward_clipped_per_loss(losses["sides"])
            grad_norm = torch.stack(list(side_norms.values())).norm()
            metrics.update({f"grad_norm_{k}": v for k, v in side_norms.items()})
        else:
            self.optimizer.zero_grad(set_to_none=True)
            losses["total"].backward()
            if self.distributed:
                self._allreduce_grads()
            norms = torch.stack([torch.nn.utils.clip_grad_norm_(g, self.config.grad_clip) for g in self.clip_groups])
            grad_norm = norms.norm()
        if self.log_eta.grad is not None and not torch.isfinite(self.log_eta.grad):
            self.log_eta.grad = None
        if torch.isfinite(grad_norm):
            self.optimizer.step()
        self.step_count += 1
        with torch.no_grad():
            self.log_eta.clamp_(math.log(1e-4), math.log(1e3))
        self.update_target()
        out = {k: float(v) for k, v in metrics.items()}
        out.update(alpha=alpha, lr=lr, policy_learns=float(learns), grad_norm=float(grad_norm),
                   skipped=float(not math.isfinite(float(grad_norm))))
        return out

    def _augmented(self, batch: dict, keys: tuple[str, ...]) -> dict:
        """``batch`` with the random-shift and brightness augmentation applied to its ``keys``' images."""
        if not (self.config.image_shift or self.config.image_jitter):
            return batch
        return {**batch, **{k: augment_images(batch[k], self.config.image_shift, self.config.image_jitter)
                            for k in keys}}

    def _backward_clipped_per_loss(self, sides: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """grad_clip_by: loss: each term's gradient over all parameters is clipped to grad_clip on its own,
        then the clipped gradients are summed; {term: its norm before clipping}."""
        params = list(self.model.parameters())
        live = [(k, v) for k, v in sides.items() if v.requires_grad]
        summed, norms = None, {}
        for i, (name, loss) in enumerate(live):
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward(retain_graph=i < len(live) - 1)
            if self.distributed:
                self._allreduce_grads()
            if any(p.grad is not None for p in params):  # not the η dual: it reaches log η alone, never clipped
                norms[name] = torch.nn.utils.clip_grad_norm_(params, self.config.grad_clip)
            grads = [p.grad for p in [*params, self.log_eta]]
            summed = grads if summed is None else [
                a if b is None else b if a is None else a + b for a, b in zip(summed, grads)]
        for p, g in zip([*params, self.log_eta], summed or []):
            p.grad = g
        return norms

    @torch.no_grad()
    def data_values(self, store, chunk: int = 1024, baseline_samples: int = 0,
                    generator: torch.Generator | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """Q_θ'(s, a) of the data's own action at every transition of ``store`` (the target network's
        expected return), in the store's transition order; with ``baseline_samples`` N > 0 also
        V_η(s) = η·log mean_j exp(Q_θ'(s, a'_j)/η), a'_j ~ π_θ'(·|s) (else None)."""
        tgt = self.target
        q_out = np.empty(len(store.index), np.float32)
        v_out = np.empty(len(store.index), np.float32) if baseline_samples else None
        eta = float(self.log_eta.detach().exp())
        for s in range(0, len(store.index), chunk):
            rows = store.index[s:s + chunk]
            obs = obs_to(store.obs(rows), self.device)
            action = torch.from_numpy(store.actions[rows]).to(self.device).float()
            with self._autocast():
                lat = tgt.encode(obs)
                q = tgt.q_value(lat, action[:, None])[:, 0]
                if v_out is not None:
                    a_s = tgt.sample_actions(tgt.policy_logits(lat), baseline_samples, generator=generator)
                    v_out[s:s + len(rows)] = soft_value(tgt.q_value(lat, a_s), eta).cpu().numpy()
            q_out[s:s + len(rows)] = q.float().cpu().numpy()
        return q_out, v_out

    def _allreduce_grads(self) -> None:
        grads = [p.grad for p in [*self.model.parameters(), self.log_eta] if p.grad is not None]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= dist.get_world_size()
        i = 0
        for g in grads:
            g.copy_(flat[i:i + g.numel()].view_as(g))
            i += g.numel()

    def to_device(self, batch: Mapping[str, Any]) -> dict:
        out = {}
        for k, v in batch.items():
            if k in ("obs", "next_obs"):
                out[k] = obs_to(v, self.device)
            elif isinstance(v, torch.Tensor):
                out[k] = v.to(self.device, non_blocking=True)
            else:
                out[k] = v
        return out
