"""Independent PyTorch reference of IVON and IVON-PoCo / IVON-PoCoMo (shared/spec/OPTIMIZERS.md §2, §6).

Written from the specification. Every update line follows the fp32 arithmetic of spec §2.9 literally:
scalar coefficients are formed in Python double and rounded to float32 once (0-dim float32 tensors),
and each line below is one float32 torch operation (one rounding, no fused multiply-add):

  sample:      noise = eps / sqrt(essf * (h + wdf));  theta = m + noise
  clip:        c = min(1, gc / (||g||_2 + 1e-6)) in float32 (norm over all parameters summed in double, then
               rounded to float32, as torch clip_grad_norm_'s float32 total_norm)
               g_hat = g * c
  accumulate:  k == 1: acc = x;  else acc = acc + (x - acc) / float(k)      (x = g_hat, then x = noise * g_hat)
  update:      g  = (b1f * g) + (omb1 * gin)                  gin = acc_g (IVON) or g_vr (PoCo)
               hw = h + wdf;  f = (acc_ng * hw) * essf        (PoCo: f = h_vr, see below);  d = h - f
               hn = ((b2f * h) + (omb2 * f)) + ((c2 * (d * d)) / hw)
               u  = ((g / bc) + (wdf * m)) / (hn + wdf);  u = min(max(u, -r), r)
               m  = m - lr_eff * u;  h = hn
  with b1f = f32(b1), omb1 = f32(1 - b1), b2f = f32(b2), omb2 = f32(1 - b2), c2 = f32(0.5 (1 - b2)^2),
  essf = f32(ess), wdf = f32(weight_decay), lr_eff = f32(lr (h0 + wd)) (rescale_lr) or f32(lr),
  bc = f32(1 - b1^t) (debias) or 1, t = number of updates including this one (first update t = 1).

IVON-PoCo (§6.3), with gamma_t (gf = f32(gamma_t)) from step `poco_start` on, anchor (m_out, h_out):
  hw_out = h_out + wdf
  h_in  = (acc_ng * hw) * essf;            h_out_est = (acc_ng_out * hw_out) * essf
  g_vr  = acc_g - gf * (acc_g_out - g_bar_out)
  h_vr  = h_in - gf * (h_out_est - h_bar_out)
  P     = (gf * (h_bar_out - h_out_est)) * (m - m_out)     (poco_prox; else no term)
  then the update above with gin = g_vr (+ P if poco_prox_in_momentum), f = h_vr, and
  u = (((g / bc) + (wdf * m)) + P) / (hn + wdf) when P is not inside the momentum.
  poco_momentum = False (IVON-PoCo): b1 = 0 and no debias. Before poco_start: the plain IVON update.
  Anchor refresh before step s when s >= poco_start and (s - poco_start) % poco_period == 0:
  m_out = m, h_out = h; each of the poco_mega micro-batches k at theta = m_out + eps_k / sqrt(essf * hw_out)
  (poco_mega_noise; else at m_out), per-micro-batch clipped gradient g; Welford g_bar_out = mean(g),
  A = mean(noise_out * g); h_bar_out = (A * hw_out) * essf (poco_mega_noise; else h_bar_out = h_out).
  Inner micro-batch j: theta_in = m + noise_j, theta_out = m_out + eps'_j / sqrt(essf * hw_out) on the same
  tokens, eps' = eps_j (poco_shared_noise) or the OUTER stream. poco_clip_each: both gradients clipped
  separately with the rule above; otherwise both are scaled by c = min(1, gc / (||g_in - gf*g_out|| + 1e-6)).
  Mega-batch gradients are always clipped per micro-batch.
  gamma schedule: 'constant' gamma_t = gamma; 'linear' gamma_t = gamma (last - s) / (last - start), last =
  total_steps - 1 (gamma at the start step, 0 at the last step); gamma_t = 0 before poco_start.

Noise: every draw goes through the module-level function `draw_normal(seed, rank, step, sample, stream, start, n)`
(default: ivon_noise.normal, the bit-identical twin of llmc/noise.h), called once per sample for all parameters
with the flat parameter index in `param_order` (default: the parameters in group order; pass the model's
parameters in model-file order to match the C trainer). A test may replace `ivon_torch.draw_normal`.
Streams: 0 = inner sample (step s, sample j), 1 = anchor mega-batch (step s before which the refresh happens,
sample k), 2 = PoCo theta_out noise when not shared; step s is the 0-based index of the step being computed.

Call sequence, IVON (ivon-opt's `sampled_params` is `with opt.sampled_params(j): loss.backward()`):

    opt = IVON(groups, ess=1e10, seed=1234, rank=0, param_order=list(model.parameters()))
    for s in range(N):
        for group in opt.param_groups: group["lr"] = lr_s      # un-rescaled lr of step s
        for j in range(K):
            opt.sample(j)                  # p = m + sigma * eps(step s, sample j); gradients cleared
            loss_fn(batch_j).backward()
            opt.accumulate()               # clip this sample's gradient, Welford; p = m again
        opt.step()                         # update, t = s + 1; p = m (the mean)

Call sequence, IVONPoCo:

    for s in range(N):
        if opt.anchor_due():               # refresh before step s
            opt.anchor_begin()             # m_out = m, h_out = h
            for k in range(poco_mega):
                opt.anchor_sample(k); loss_fn(mega_k).backward(); opt.anchor_accumulate()
            opt.anchor_end()               # g_bar_out, h_bar_out
        for j in range(K):
            opt.sample(j); loss_fn(batch_j).backward(); opt.accumulate()
            if opt.correcting():           # s >= poco_start: second pass at theta_out, same tokens
                opt.sample_out(j); loss_fn(batch_j).backward(); opt.accumulate_out()
        opt.step()

`python3 ivon_torch.py` runs self-checks on a toy model (reductions of spec §2.8 and §6.6, bit-exact
identities) and prints `N passed, N failed` last.
"""

import contextlib
import math

import torch

STREAM_SAMPLE = 0
STREAM_ANCHOR = 1
STREAM_OUTER = 2
STREAM_BMA = 3


def draw_normal(seed, rank, step, sample, stream, start, n):
    """n standard normals for flat parameter indices start..start+n-1 (float32). Replaceable by tests."""
    import ivon_noise
    return ivon_noise.normal(seed, rank, step, sample, stream, start, n)


def f32t(x):
    """A Python (double) value rounded once to a float32 0-dim tensor."""
    return torch.tensor(float(x), dtype=torch.float32)


def grad_norm(tensors):
    """L2 norm over all tensors, accumulated in double (None entries count as zero)."""
    total = 0.0
    for t in tensors:
        if t is not None:
            total += float(t.double().pow(2).sum())
    return math.sqrt(total)


def clip_scale(norm, max_norm):
    """torch clip_grad_norm_ rule in float32: c = min(1, max_norm / (norm + 1e-6)); max_norm <= 0: 1.
    norm: the double norm, rounded to float32 first (torch's total_norm is a float32 tensor)."""
    if max_norm <= 0:
        return f32t(1.0)
    c = f32t(max_norm) / (f32t(norm) + f32t(1e-6))
    return torch.clamp(c, max=1.0)


def welford(acc, x, k):
    """Running mean over k samples (1-based k): the new accumulator."""
    if k == 1:
        return x.clone()
    return acc + (x - acc) / f32t(float(k))


class _IVONBase(torch.optim.Optimizer):
    """Shared machinery: parameter state, flat noise index, sampling, per-sample clipping, Newton update."""

    def __init__(self, params, defaults, seed, rank, param_order, grad_clip, debias, rescale_lr):
        super().__init__(params, defaults)
        for group in self.param_groups:
            if not group["lr"] >= 0:
                raise ValueError("lr must be >= 0, got %r" % group["lr"])
            if not group["ess"] > 0:
                raise ValueError("ess must be > 0, got %r" % group["ess"])
            if not group["hess_init"] > 0:
                raise ValueError("hess_init must be > 0, got %r" % group["hess_init"])
            if not 0 <= group["beta1"] < 1:
                raise ValueError("beta1 must be in [0, 1), got %r" % group["beta1"])
            if not 0 <= group["beta2"] <= 1:
                raise ValueError("beta2 must be in [0, 1], got %r" % group["beta2"])
            if not group["weight_decay"] >= 0:
                raise ValueError("weight_decay must be >= 0, got %r" % group["weight_decay"])
            if not group["clip_radius"] >= 0:
                raise ValueError("clip_radius must be >= 0 (0 = no clipping), got %r" % group["clip_radius"])
            group.setdefault("step", 0)
        self.seed, self.rank = int(seed), int(rank)
        self.grad_clip, self.debias, self.rescale_lr = float(grad_clip), bool(debias), bool(rescale_lr)
        all_params = [p for group in self.param_groups for p in group["params"]]
        order = all_params if param_order is None else list(param_order)
        ids = {id(p) for p in all_params}
        if len(order) != len(all_params) or {id(p) for p in order} != ids:
            raise ValueError("param_order must list exactly the optimizer's parameters, each once")
        self._order = order
        self._offset = {}
        off = 0
        for p in order:
            self._offset[id(p)] = off
            off += p.numel()
        self.num_parameters = off
        for p in all_params:
            st = self.state[p]
            st["mean"] = p.detach().clone().float()
            st["momentum"] = torch.zeros_like(st["mean"])
        for group in self.param_groups:
            for p in group["params"]:
                self.state[p]["hess"] = torch.full_like(self.state[p]["mean"], group["hess_init"])
        self._k = 0
        self._phase = "idle"
        self._last_eps = (-1, -1, None)
        self.last_stats = None

    # --- helpers ---
    @property
    def t(self):
        """number of completed updates = 0-based index of the step being computed"""
        return self.param_groups[0]["step"]

    def _params(self):
        return [(group, p) for group in self.param_groups for p in group["params"]]

    def _eps(self, step, sample, stream):
        eps = draw_normal(self.seed, self.rank, step, sample, stream, 0, self.num_parameters)
        if not isinstance(eps, torch.Tensor) or eps.dtype != torch.float32 or eps.numel() != self.num_parameters:
            raise RuntimeError("draw_normal must return %d float32 values" % self.num_parameters)
        eps = eps.reshape(-1)
        return {id(p): eps[self._offset[id(p)]:self._offset[id(p)] + p.numel()].view_as(p) for p in self._order}

    @staticmethod
    def _noise(eps, h, group):
        return eps / torch.sqrt(f32t(group["ess"]) * (h + f32t(group["weight_decay"])))

    def _load(self, which):
        """p.data = state[which] for all parameters; gradients cleared."""
        with torch.no_grad():
            for _, p in self._params():
                p.copy_(self.state[p][which])
                p.grad = None

    def _grads(self):
        return [p.grad.detach().float() if p.grad is not None else torch.zeros_like(p, dtype=torch.float32)
                for _, p in self._params()]

    def _clipped_grads(self):
        gs = self._grads()
        c = clip_scale(grad_norm(gs), self.grad_clip)
        return [g * c for g in gs], c

    def _scalars(self, group, beta1, debias, t):
        b1, b2 = float(beta1), float(group["beta2"])
        wd, h0, lr = float(group["weight_decay"]), float(group["hess_init"]), float(group["lr"])
        r = float(group["clip_radius"])
        return dict(b1f=f32t(b1), omb1=f32t(1.0 - b1), b2f=f32t(b2), omb2=f32t(1.0 - b2),
                    c2=f32t(0.5 * (1.0 - b2) * (1.0 - b2)), essf=f32t(group["ess"]), wdf=f32t(wd),
                    lr_eff=f32t(lr * (h0 + wd) if self.rescale_lr else lr),
                    bc=f32t(1.0 - math.pow(b1, t) if debias else 1.0),
                    r=float(torch.tensor(r, dtype=torch.float32)) if r > 0 else math.inf)

    @staticmethod
    def _newton(st, gin, f, prox, prox_in_momentum, sc, stats):
        """The element step shared by IVON and PoCo; updates st["mean"], st["momentum"], st["hess"]."""
        m, g, h = st["mean"], st["momentum"], st["hess"]
        if prox is not None and prox_in_momentum:
            gin = gin + prox
        g = (sc["b1f"] * g) + (sc["omb1"] * gin)
        hw = h + sc["wdf"]
        d = h - f
        hn = ((sc["b2f"] * h) + (sc["omb2"] * f)) + ((sc["c2"] * (d * d)) / hw)
        num = (g / sc["bc"]) + (sc["wdf"] * m)
        if prox is not None and not prox_in_momentum:
            num = num + prox
        u = num / (hn + sc["wdf"])
        r = sc["r"]
        stats["clipped"] += int((u.abs() > r).sum())
        u = torch.clamp(u, min=-r, max=r)
        m_new = m - sc["lr_eff"] * u
        stats["sum_abs_dm"] += float((m_new - m).abs().double().sum())
        st["mean"], st["momentum"], st["hess"] = m_new, g, hn

    def _finish_step(self, stats):
        for group in self.param_groups:
            group["step"] += 1
        for _, p in self._params():
            st = self.state[p]
            for key in ("noise", "acc_g", "acc_ng", "acc_g_out", "acc_ng_out", "noise_out", "grad_in"):
                st.pop(key, None)
        self._k = 0
        self._phase = "idle"
        self._last_eps = (-1, -1, None)
        self._load("mean")
        self.last_stats = stats

    # --- IVON sampling ---
    def sample(self, j):
        """theta = m + sigma * eps(step t, sample j, stream 0) into the parameters; gradients cleared."""
        if self._phase not in ("idle", "inner"):
            raise RuntimeError("sample() during %s" % self._phase)
        eps = self._eps(self.t, j, STREAM_SAMPLE)
        self._last_eps = (self.t, j, eps)  # reused by a shared-noise PoCo theta_out pass
        with torch.no_grad():
            for group, p in self._params():
                st = self.state[p]
                st["noise"] = self._noise(eps[id(p)], st["hess"], group)
                p.copy_(st["mean"] + st["noise"])
                p.grad = None
        self._phase = "sampled"

    @contextlib.contextmanager
    def sampled_params(self, j):
        """with opt.sampled_params(j): loss.backward()  -- sample(j) on entry, accumulate() on exit"""
        self.sample(j)
        yield
        self.accumulate()

    def _accumulate_in(self, ghat):
        for (_, p), gp in zip(self._params(), ghat):
            st = self.state[p]
            st["acc_g"] = welford(st.get("acc_g"), gp, self._k)
            st["acc_ng"] = welford(st.get("acc_ng"), st["noise"] * gp, self._k)


class IVON(_IVONBase):
    """IVON (spec §2.4, fp32 arithmetic of §2.9). Param groups may set their own weight_decay (prior precision
    delta) and lr, ess, hess_init, beta1, beta2, clip_radius (0 = no clipping). grad_clip, debias, rescale_lr,
    seed, rank are global."""

    def __init__(self, params, lr=0.0, ess=1e10, hess_init=1e-3, beta1=0.9, beta2=0.99999, weight_decay=1e-6,
                 clip_radius=1e-3, grad_clip=1.0, debias=True, rescale_lr=True, seed=1337, rank=0,
                 param_order=None):
        defaults = dict(lr=lr, ess=ess, hess_init=hess_init, beta1=beta1, beta2=beta2, weight_decay=weight_decay,
                        clip_radius=clip_radius)
        super().__init__(params, defaults, seed, rank, param_order, grad_clip, debias, rescale_lr)

    def accumulate(self):
        """After backward at the sample: clip its gradient, Welford into acc_g, acc_ng; parameters back to m.
        Returns the gradient norm before clipping."""
        if self._phase != "sampled":
            raise RuntimeError("accumulate() without sample()")
        gs = self._grads()
        norm = grad_norm(gs)
        c = clip_scale(norm, self.grad_clip)
        self._k += 1
        self._accumulate_in([g * c for g in gs])
        self._load("mean")
        self._phase = "inner"
        return norm

    @torch.no_grad()
    def step(self, closure=None):
        if closure is not None:
            raise RuntimeError("IVON.step takes no closure: use sample()/accumulate()")
        if self._phase != "inner" or self._k == 0:
            raise RuntimeError("step() needs at least one sample()/accumulate() first")
        t = self.t + 1
        stats = {"clipped": 0, "sum_abs_dm": 0.0, "samples": self._k}
        for group in self.param_groups:
            sc = self._scalars(group, group["beta1"], self.debias, t)
            for p in group["params"]:
                st = self.state[p]
                f = (st["acc_ng"] * (st["hess"] + sc["wdf"])) * sc["essf"]
                self._newton(st, st["acc_g"], f, None, False, sc, stats)
        self._finish_step(stats)


class IVONPoCo(_IVONBase):
    """IVON-PoCo / IVON-PoCoMo (spec §6.3, switches of §6.4). Per-group hyper-parameters as IVON plus gamma.
    poco_start, poco_period, poco_mega, the switches, grad_clip, debias, rescale_lr, seed, rank are global.
    total_steps is needed for the linear gamma schedule only."""

    def __init__(self, params, lr=0.0, ess=1e10, hess_init=1e-3, beta1=0.9, beta2=0.99999, weight_decay=1e-6,
                 clip_radius=1e-3, gamma=0.5, grad_clip=1.0, debias=True, rescale_lr=True, seed=1337, rank=0,
                 param_order=None, gamma_schedule="constant", poco_start=0, poco_period=32, poco_mega=1,
                 total_steps=None, shared_noise=True, prox=True, prox_in_momentum=False, momentum=True,
                 clip_each=True, mega_noise=True):
        defaults = dict(lr=lr, ess=ess, hess_init=hess_init, beta1=beta1, beta2=beta2, weight_decay=weight_decay,
                        clip_radius=clip_radius, gamma=gamma)
        super().__init__(params, defaults, seed, rank, param_order, grad_clip, debias, rescale_lr)
        for group in self.param_groups:
            if not 0 <= group["gamma"] <= 1:
                raise ValueError("gamma must be in [0, 1], got %r" % group["gamma"])
            group.setdefault("anchor_step", -1)
        if gamma_schedule not in ("constant", "linear"):
            raise ValueError("gamma_schedule must be 'constant' or 'linear', got %r" % gamma_schedule)
        if poco_start < 0 or poco_period < 1 or poco_mega < 1:
            raise ValueError("need poco_start >= 0, poco_period >= 1, poco_mega >= 1")
        if gamma_schedule == "linear" and (total_steps is None or total_steps < 1):
            raise ValueError("the linear gamma schedule needs total_steps")
        self.gamma_schedule, self.total_steps = gamma_schedule, total_steps
        self.poco_start, self.poco_period, self.poco_mega = int(poco_start), int(poco_period), int(poco_mega)
        self.shared_noise, self.prox, self.prox_in_momentum = bool(shared_noise), bool(prox), bool(prox_in_momentum)
        self.momentum, self.clip_each, self.mega_noise = bool(momentum), bool(clip_each), bool(mega_noise)
        self._k_out = 0

    def gamma_at(self, group, s):
        """gamma_t of step s (double)."""
        if s < self.poco_start:
            return 0.0
        g0 = float(group["gamma"])
        if self.gamma_schedule == "constant":
            return g0
        last = self.total_steps - 1
        if last <= self.poco_start:
            return g0 if s < last else 0.0
        return g0 * max(0.0, float(last - s)) / float(last - self.poco_start)

    def anchor_due(self):
        s = self.t
        return s >= self.poco_start and (s - self.poco_start) % self.poco_period == 0

    def correcting(self):
        """True from poco_start on (an anchor exists): the inner step takes a second pass at theta_out."""
        return self.t >= self.poco_start

    # --- anchor refresh ---
    def anchor_begin(self):
        if self._phase != "idle":
            raise RuntimeError("anchor_begin() inside a step")
        for _, p in self._params():
            st = self.state[p]
            st["anchor_mean"] = st["mean"].clone()
            st["anchor_hess"] = st["hess"].clone()
            st.pop("acc_mega_g", None)
            st.pop("acc_mega_ng", None)
        for group in self.param_groups:
            group["anchor_step"] = self.t
        self._k_mega = 0
        self._phase = "anchor"

    def anchor_sample(self, k):
        """theta = m_out + sigma_out * eps(step t, sample k, stream 1) (or m_out without mega noise)."""
        if self._phase != "anchor":
            raise RuntimeError("anchor_sample() outside anchor_begin()/anchor_end()")
        eps = self._eps(self.t, k, STREAM_ANCHOR) if self.mega_noise else None
        with torch.no_grad():
            for group, p in self._params():
                st = self.state[p]
                if self.mega_noise:
                    st["noise_mega"] = self._noise(eps[id(p)], st["anchor_hess"], group)
                    p.copy_(st["anchor_mean"] + st["noise_mega"])
                else:
                    p.copy_(st["anchor_mean"])
                p.grad = None
        self._phase = "anchor_sampled"

    def anchor_accumulate(self):
        if self._phase != "anchor_sampled":
            raise RuntimeError("anchor_accumulate() without anchor_sample()")
        ghat, _ = self._clipped_grads()
        self._k_mega += 1
        for (_, p), gp in zip(self._params(), ghat):
            st = self.state[p]
            st["acc_mega_g"] = welford(st.get("acc_mega_g"), gp, self._k_mega)
            if self.mega_noise:
                st["acc_mega_ng"] = welford(st.get("acc_mega_ng"), st["noise_mega"] * gp, self._k_mega)
        self._load("mean")
        self._phase = "anchor"

    def anchor_end(self):
        if self._phase != "anchor" or self._k_mega == 0:
            raise RuntimeError("anchor_end() needs at least one anchor_sample()/anchor_accumulate()")
        with torch.no_grad():
            for group, p in self._params():
                st = self.state[p]
                st["anchor_grad"] = st.pop("acc_mega_g")
                if self.mega_noise:
                    hw_out = st["anchor_hess"] + f32t(group["weight_decay"])
                    st["anchor_hess_est"] = (st.pop("acc_mega_ng") * hw_out) * f32t(group["ess"])
                    st.pop("noise_mega", None)
                else:
                    st["anchor_hess_est"] = st["anchor_hess"].clone()
        self._load("mean")
        self._phase = "idle"

    # --- inner step ---
    def accumulate(self):
        """After backward at theta_in. Returns the gradient norm before clipping."""
        if self._phase != "sampled":
            raise RuntimeError("accumulate() without sample()")
        gs = self._grads()
        norm = grad_norm(gs)
        self._k += 1
        if not self.correcting() or self.clip_each:
            c = clip_scale(norm, self.grad_clip)
            self._accumulate_in([g * c for g in gs])
        else:
            for (_, p), g in zip(self._params(), gs):
                self.state[p]["grad_in"] = g
        self._load("mean")
        self._phase = "inner" if not self.correcting() else "need_out"
        return norm

    def sample_out(self, j):
        """theta_out = m_out + sigma_out * eps' with eps' = eps(step t, sample j) (shared) or stream 2."""
        if self._phase != "need_out":
            raise RuntimeError("sample_out() must follow accumulate() of a correcting step")
        if self.shared_noise and self._last_eps[:2] == (self.t, j):
            eps = self._last_eps[2]
        else:
            eps = self._eps(self.t, j, STREAM_SAMPLE if self.shared_noise else STREAM_OUTER)
        with torch.no_grad():
            for group, p in self._params():
                st = self.state[p]
                st["noise_out"] = self._noise(eps[id(p)], st["anchor_hess"], group)
                p.copy_(st["anchor_mean"] + st["noise_out"])
                p.grad = None
        self._phase = "sampled_out"

    def accumulate_out(self):
        """After backward at theta_out (same tokens as the theta_in pass). Returns the norm before clipping."""
        if self._phase != "sampled_out":
            raise RuntimeError("accumulate_out() without sample_out()")
        gs = self._grads()
        norm = grad_norm(gs)
        if self.clip_each:
            c = clip_scale(norm, self.grad_clip)
            gout = [g * c for g in gs]
        else:
            diffs, gins = [], []
            for (group, p), g in zip(self._params(), gs):
                gin = self.state[p].pop("grad_in")
                gins.append(gin)
                diffs.append(gin - f32t(self.gamma_at(group, self.t)) * g)
            c = clip_scale(grad_norm(diffs), self.grad_clip)
            self._accumulate_in([g * c for g in gins])
            gout = [g * c for g in gs]
        for (_, p), gp in zip(self._params(), gout):
            st = self.state[p]
            st["acc_g_out"] = welford(st.get("acc_g_out"), gp, self._k)
            st["acc_ng_out"] = welford(st.get("acc_ng_out"), st["noise_out"] * gp, self._k)
        self._load("mean")
        self._phase = "inner"
        return norm

    @torch.no_grad()
    def step(self, closure=None):
        if closure is not None:
            raise RuntimeError("IVONPoCo.step takes no closure: see the module docstring")
        if self._phase != "inner" or self._k == 0:
            raise RuntimeError("step() needs complete sample()/accumulate()[/sample_out()/accumulate_out()] first")
        s = self.t
        t = s + 1
        stats = {"clipped": 0, "sum_abs_dm": 0.0, "samples": self._k}
        for group in self.param_groups:
            beta1 = group["beta1"] if self.momentum else 0.0
            sc = self._scalars(group, beta1, self.debias and self.momentum, t)
            corr = self.correcting()
            gf = f32t(self.gamma_at(group, s))
            for p in group["params"]:
                st = self.state[p]
                f_in = (st["acc_ng"] * (st["hess"] + sc["wdf"])) * sc["essf"]
                if not corr:
                    self._newton(st, st["acc_g"], f_in, None, False, sc, stats)
                    continue
                f_out = (st["acc_ng_out"] * (st["anchor_hess"] + sc["wdf"])) * sc["essf"]
                g_vr = st["acc_g"] - gf * (st["acc_g_out"] - st["anchor_grad"])
                h_vr = f_in - gf * (f_out - st["anchor_hess_est"])
                prox = (gf * (st["anchor_hess_est"] - f_out)) * (st["mean"] - st["anchor_mean"]) if self.prox else None
                self._newton(st, g_vr, h_vr, prox, self.prox_in_momentum, sc, stats)
        self._finish_step(stats)


# ---------------------------------------------------------------------------------------------------------
# self-checks on a toy model (spec §2.8, §6.6 reductions and exact identities); no ivon_noise needed

def _selftest():
    import copy
    global draw_normal
    results = []

    def report(name, ok, detail=""):
        results.append(ok)
        print("%-4s %s %s" % ("OK" if ok else "FAIL", name, detail))

    def toy_noise(seed, rank, step, sample, stream, start, n):
        g = torch.Generator()
        g.manual_seed(((seed * 31 + rank) * 1009 + step) * 7919 + sample * 13 + stream * 100003)
        return torch.randn(start + n, generator=g)[start:]

    zero_noise = lambda *a: torch.zeros(a[-1])
    saved = draw_normal
    torch.manual_seed(0)
    X = torch.randn(64, 5)
    Y = torch.randn(64, 1)
    base = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))

    def groups(model, wd=1e-2):
        w = [p for p in model.parameters() if p.dim() >= 2]
        b = [p for p in model.parameters() if p.dim() < 2]
        return [{"params": w, "weight_decay": wd}, {"params": b, "weight_decay": 0.0}]

    def batch(i):
        idx = torch.arange(i * 8, i * 8 + 8) % 64
        return X[idx], Y[idx]

    def lossf(model, i):
        x, y = batch(i)
        return ((model(x) - y) ** 2).mean()

    def run_ivon(opt, model, steps, K, lrs):
        for s in range(steps):
            for g in opt.param_groups:
                g["lr"] = lrs[s]
            for j in range(K):
                with opt.sampled_params(j):
                    lossf(model, s * K + j).backward()
            opt.step()

    def run_poco(opt, model, steps, K, lrs, mega_batches=None):
        nb = [0]

        def nxt():
            nb[0] += 1
            return nb[0] - 1
        for s in range(steps):
            for g in opt.param_groups:
                g["lr"] = lrs[s]
            if opt.anchor_due():
                opt.anchor_begin()
                for k in range(opt.poco_mega):
                    opt.anchor_sample(k)
                    lossf(model, mega_batches(s, k) if mega_batches else nxt()).backward()
                    opt.anchor_accumulate()
                opt.anchor_end()
            for j in range(K):
                b = nxt() if not mega_batches else s * K + j
                opt.sample(j)
                lossf(model, b).backward()
                opt.accumulate()
                if opt.correcting():
                    opt.sample_out(j)
                    lossf(model, b).backward()
                    opt.accumulate_out()
            opt.step()

    def states(opt):
        return [torch.cat([opt.state[p][k].reshape(-1) for _, p in opt._params()]) for k in ("mean", "momentum", "hess")]

    try:
        draw_normal = toy_noise
        lrs = [0.0, 0.5, 1.0, 1.0, 1.0, 0.7]
        hp = dict(ess=1e3, hess_init=0.1, beta1=0.9, beta2=0.99, clip_radius=0.05, grad_clip=1.0, seed=5)

        # (a) PoCo with gamma = 0 is IVON bit for bit (spec §6.6a), prox and clip_each on
        m1, m2 = copy.deepcopy(base), copy.deepcopy(base)
        o1 = IVON(groups(m1), **hp)
        o2 = IVONPoCo(groups(m2), gamma=0.0, poco_start=2, poco_period=2, poco_mega=2, **hp)
        run_ivon(o1, m1, 6, 3, lrs)
        # PoCo consumes extra (mega) batches: serve the same inner batches as IVON
        run_poco(o2, m2, 6, 3, lrs, mega_batches=lambda s, k: 60 + k)
        same = all(torch.equal(a, b) for a, b in zip(states(o1), states(o2)))
        report("poco gamma=0 == ivon (bit-exact m, momentum, h)", same)
        report("parameters hold the mean after step", all(torch.equal(p.detach(), o1.state[p]["mean"])
                                                          for p in m1.parameters()))

        # (b) cancellation (spec §6.6b): anchor at m, inner batches = mega batches, same noise for both streams
        def stream_blind(seed, rank, step, sample, stream, start, n):
            return toy_noise(seed, rank, step, sample, 0, start, n)
        draw_normal = stream_blind
        m3, m4 = copy.deepcopy(base), copy.deepcopy(base)
        hpb = dict(hp, beta2=0.99)
        o3 = IVONPoCo(groups(m3), gamma=0.0, poco_start=0, poco_period=100, poco_mega=2, **hpb)
        o4 = IVONPoCo(groups(m4), gamma=0.7, poco_start=0, poco_period=100, poco_mega=2, **hpb)
        for o, m in ((o3, m3), (o4, m4)):
            for g in o.param_groups:
                g["lr"] = 1.0
            o.anchor_begin()
            for k in range(2):
                o.anchor_sample(k)
                lossf(m, k).backward()
                o.anchor_accumulate()
            o.anchor_end()
            for j in range(2):
                o.sample(j)
                lossf(m, j).backward()
                o.accumulate()
                o.sample_out(j)
                lossf(m, j).backward()
                o.accumulate_out()
            o.step()
        diff = max(float((a - b).abs().max()) for a, b in zip(states(o3), states(o4)))
        report("poco cancellation (anchor at m, same batches and noise)", diff < 1e-6, "max diff %.2e" % diff)

        # spec §2.8: no noise, beta2 = 1, beta1 = 0, no debias, r = inf -> SGD with L2: m -= lr (g + delta m)
        draw_normal = zero_noise
        m5, m6 = copy.deepcopy(base), copy.deepcopy(base)
        o5 = IVON(groups(m5), ess=1e3, hess_init=0.1, beta1=0.0, beta2=1.0, clip_radius=0.0, grad_clip=0.0,
                  debias=False)
        sgd = torch.optim.SGD(groups(m6), lr=0.3)
        for s in range(4):
            for g in o5.param_groups:
                g["lr"] = 0.3
            with o5.sampled_params(0):
                lossf(m5, s).backward()
            o5.step()
            sgd.zero_grad()
            lossf(m6, s).backward()
            sgd.step()
        diff = max(float((a - b).abs().max()) for a, b in zip(m5.parameters(), m6.parameters()))
        report("ivon -> sgd + L2 reduction (spec 2.8)", diff < 1e-5, "max diff %.2e" % diff)

        # spec §6.6c: no noise, beta2 = 1, no momentum, r = inf, prox off -> alpha-SVRG with L2 decay
        m7 = copy.deepcopy(base)
        o7 = IVONPoCo(groups(m7), ess=1e3, hess_init=0.1, beta2=1.0, clip_radius=0.0, grad_clip=0.0, gamma=0.6,
                      momentum=False, prox=False, poco_start=0, poco_period=3, poco_mega=4)
        w = [p.detach().clone() for p in base.parameters()]
        ref_model = copy.deepcopy(base)
        lr, gam = 0.2, float(torch.tensor(0.6, dtype=torch.float32))

        def grads_at(ws, b):
            with torch.no_grad():
                for p, v in zip(ref_model.parameters(), ws):
                    p.copy_(v)
            ref_model.zero_grad()
            lossf(ref_model, b).backward()
            return [p.grad.clone() for p in ref_model.parameters()]
        wds = [1e-2 if p.dim() >= 2 else 0.0 for p in base.parameters()]
        nb = 0
        for s in range(6):
            if s % 3 == 0:
                w_out = [v.clone() for v in w]
                gs = [grads_at(w_out, nb + k) for k in range(4)]
                g_bar = [sum(g[i] for g in gs) / 4 for i in range(len(w))]
                nb += 4
            gi, go = grads_at(w, nb), grads_at(w_out, nb)
            nb += 1
            w = [v - lr * (a - gam * (b - c) + wd * v) for v, a, b, c, wd in zip(w, gi, go, g_bar, wds)]
        for g in o7.param_groups:
            g["lr"] = lr
        run_poco(o7, m7, 6, 1, [lr] * 6)
        diff = max(float((a - b).abs().max()) for a, b in zip(m7.parameters(), w))
        report("poco -> alpha-svrg reduction (spec 6.6c)", diff < 1e-5, "max diff %.2e" % diff)

        # spec §2.9 line by line in numpy float32 (independent transcription) == the torch update, bit for bit
        import numpy as np
        f = np.float32
        draw_normal = toy_noise
        m9 = copy.deepcopy(base)
        hp9 = dict(ess=1e4, hess_init=0.01, beta1=0.9, beta2=0.99, clip_radius=0.02, grad_clip=0.5, seed=3)
        o9 = IVON(groups(m9, wd=3e-3), **hp9)
        params = [p for _, p in o9._params()]
        wds = [3e-3 if p.dim() >= 2 else 0.0 for p in params]
        M = [p.detach().numpy().astype(np.float32).copy() for p in params]
        G = [np.zeros_like(x) for x in M]
        H = [np.full_like(x, f(0.01)) for x in M]
        ok = True
        for s, lr in enumerate([0.0, 2.0, 3.0]):
            for g in o9.param_groups:
                g["lr"] = lr
            acc_g, acc_ng = [None] * len(M), [None] * len(M)
            for j in range(3):
                o9.sample(j)
                eps = o9._eps(s, j, STREAM_SAMPLE)
                noise = [eps[id(p)].numpy() / np.sqrt(f(1e4) * (H[i] + f(wds[i]))) for i, p in enumerate(params)]
                ok = ok and all(np.array_equal(p.detach().numpy(), M[i] + noise[i]) for i, p in enumerate(params))
                lossf(m9, s * 3 + j).backward()
                grads = [p.grad.detach().numpy().copy() for p in params]
                norm = f(math.sqrt(sum(float((g.astype(np.float64) ** 2).sum()) for g in grads)))
                c = min(f(0.5) / (norm + f(1e-6)), f(1.0))
                for i in range(len(M)):
                    x = grads[i] * c
                    y = noise[i] * x
                    acc_g[i] = x if j == 0 else acc_g[i] + (x - acc_g[i]) / f(j + 1)
                    acc_ng[i] = y if j == 0 else acc_ng[i] + (y - acc_ng[i]) / f(j + 1)
                o9.accumulate()
            o9.step()
            t = s + 1
            for i in range(len(M)):
                wd = wds[i]
                b1f, omb1, b2f, omb2 = f(0.9), f(1.0 - 0.9), f(0.99), f(1.0 - 0.99)
                c2, essf, wdf = f(0.5 * (1.0 - 0.99) * (1.0 - 0.99)), f(1e4), f(wd)
                lr_eff, bc = f(lr * (0.01 + wd)), f(1.0 - 0.9 ** t)
                G[i] = (b1f * G[i]) + (omb1 * acc_g[i])
                hw = H[i] + wdf
                fh = (acc_ng[i] * hw) * essf
                d = H[i] - fh
                hn = ((b2f * H[i]) + (omb2 * fh)) + ((c2 * (d * d)) / hw)
                u = ((G[i] / bc) + (wdf * M[i])) / (hn + wdf)
                u = np.minimum(np.maximum(u, f(-0.02)), f(0.02))
                M[i] = M[i] - lr_eff * u
                H[i] = hn
            ok = ok and all(np.array_equal(o9.state[p]["mean"].numpy(), M[i]) and
                            np.array_equal(o9.state[p]["momentum"].numpy(), G[i]) and
                            np.array_equal(o9.state[p]["hess"].numpy(), H[i]) for i, p in enumerate(params))
        report("ivon == numpy float32 transcription of spec 2.9 (bit-exact, 3 steps)", ok)

        # h + delta stays positive and at least halves (spec 2.5) under wild Price estimates
        draw_normal = toy_noise
        m8 = copy.deepcopy(base)
        o8 = IVON(groups(m8), ess=1e8, hess_init=1e-3, beta2=0.5, clip_radius=1e-3, seed=9)
        ok = True
        for s in range(5):
            before = [(o8.state[p]["hess"] + f32t(g["weight_decay"])).clone() for g, p in o8._params()]
            run_ivon(o8, m8, 1, 2, [1.0])
            after = [(o8.state[p]["hess"] + f32t(g["weight_decay"])) for g, p in o8._params()]
            ok = ok and all(bool((a > 0).all() and (a >= 0.5 * b * (1 - 1e-6)).all()) for a, b in zip(after, before))
        report("h + delta > 0 and (h' + delta) >= (h + delta) / 2", ok)
    finally:
        draw_normal = saved
    n_fail = results.count(False)
    print("%d passed, %d failed" % (len(results) - n_fail, n_fail))
    return n_fail == 0


if __name__ == "__main__":
    import sys
    sys.exit(0 if _selftest() else 1)
