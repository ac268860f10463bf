"""PyTorch copy of Kiln's training step, for `npm run bench:train` (bench/train.ts).

Same architecture, parameter count and update as training/ (text-encoder.ts, denoiser.ts,
objective.ts, prx.ts, optimizer.ts): a CLIP-style causal text transformer (pre-LN, GELU, key padding
mask) trained at lr * textLrRatio, a PixArt-style DiT (patchify by reshape, adaLN-Zero self-attention,
LayerNorm + cross-attention to the text tokens, GELU MLP, dropout on attention outputs and the MLP,
sin-cos position embedding, sinusoidal timestep MLP, final adaLN + linear), epsilon prediction with
DDPM linear betas, MSE + prx_weight * PRX(x0-hat), AdamW (torch, foreach), global-norm clipping, and an
EMA of the weights (diffusers EMAModel with foreach). Data: random images and tokens (Kiln's side
decodes real JPEG shards; its data time is printed separately).

  python bench/train_reference.py '<json: {config, steps, warmup, profile}>'

Prints one JSON line: steps/s, samples/s, ms/step, peak RSS, parameter count (and the top ops of
one step with --profile).
"""
import json
import math
import resource
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class TextEncoder(nn.Module):
    def __init__(self, t):
        super().__init__()
        d, h = t['width'], t['width'] * t['mlpRatio']
        self.heads, self.eps, self.causal = t['heads'], t['layerNormEps'], t['causal']
        self.tok = nn.Embedding(t['vocabSize'], d)
        self.pos = nn.Parameter(torch.randn(t['maxTokens'], d) * 0.01)
        self.layers = nn.ModuleList()
        for _ in range(t['depth']):
            self.layers.append(nn.ModuleDict(dict(
                ln1=nn.LayerNorm(d, eps=self.eps), q=nn.Linear(d, d), k=nn.Linear(d, d), v=nn.Linear(d, d), o=nn.Linear(d, d),
                ln2=nn.LayerNorm(d, eps=self.eps), fc1=nn.Linear(d, h), fc2=nn.Linear(h, d))))
        self.final = nn.LayerNorm(d, eps=self.eps)

    def forward(self, ids, key_mask):
        b, n = ids.shape
        x = self.tok(ids) + self.pos[:n]
        mask = torch.zeros(b, 1, n, n)
        mask = mask.masked_fill(~key_mask[:, None, None, :], -1e9)
        if self.causal:
            mask = mask + torch.triu(torch.full((n, n), -1e9), 1)
        for l in self.layers:
            h = l['ln1'](x)
            x = x + l['o'](attention(l['q'](h), l['k'](h), l['v'](h), self.heads, mask))
            x = x + l['fc2'](F.gelu(l['fc1'](l['ln2'](x))))
        return self.final(x)


def attention(q, k, v, heads, mask=None):
    b, n, d = q.shape
    m = k.shape[1]
    split = lambda t, length: t.view(b, length, heads, d // heads).transpose(1, 2)
    out = F.scaled_dot_product_attention(split(q, n), split(k, m), split(v, m), attn_mask=mask)
    return out.transpose(1, 2).reshape(b, n, d)


def pos_embed_2d(g, d):
    quarter = d // 4
    out = torch.zeros(g * g, d)
    for r in range(g):
        for c in range(g):
            for i in range(quarter):
                omega = 1 / 10000 ** (i / quarter)
                out[r * g + c, i] = math.sin(c * omega)
                out[r * g + c, quarter + i] = math.cos(c * omega)
                out[r * g + c, 2 * quarter + i] = math.sin(r * omega)
                out[r * g + c, 3 * quarter + i] = math.cos(r * omega)
    return out


class Denoiser(nn.Module):
    def __init__(self, s, ctx_width):
        super().__init__()
        d, p, ch = s['width'], s['patchSize'], s['channels']
        self.s = s
        self.patch = nn.Linear(p * p * ch, d)
        self.register_buffer('pos', pos_embed_2d(s['size'] // p, d))
        self.t1, self.t2 = nn.Linear(s['timestepFeatures'], d), nn.Linear(d, d)
        self.blocks = nn.ModuleList()
        for _ in range(s['depth']):
            self.blocks.append(nn.ModuleDict(dict(
                adaln=nn.Linear(d, 6 * d), q=nn.Linear(d, d), k=nn.Linear(d, d), v=nn.Linear(d, d), o=nn.Linear(d, d),
                norm_cross=nn.LayerNorm(d, eps=1e-6), cq=nn.Linear(d, d), ck=nn.Linear(ctx_width, d), cv=nn.Linear(ctx_width, d),
                co=nn.Linear(d, d), fc1=nn.Linear(d, d * s['mlpRatio']), fc2=nn.Linear(d * s['mlpRatio'], d))))
        self.final_adaln, self.final = nn.Linear(d, 2 * d), nn.Linear(d, p * p * ch)

    def forward(self, x, t, ctx, ctx_mask):
        s, b = self.s, x.shape[0]
        p, g, d, ch, drop = s['patchSize'], s['size'] // s['patchSize'], s['width'], s['channels'], s['dropout']
        x = x.view(b, g, p, g, p, ch).permute(0, 1, 3, 2, 4, 5).reshape(b, g * g, p * p * ch)
        x = self.patch(x) + self.pos
        half = s['timestepFeatures'] // 2
        freqs = torch.exp(-math.log(10000) * torch.arange(half) / half)
        arg = t[:, None] * freqs[None]
        c = F.silu(self.t2(F.silu(self.t1(torch.cat([torch.cos(arg), torch.sin(arg)], 1)))))
        ln = lambda y: F.layer_norm(y, (d,), eps=1e-6)
        for blk in self.blocks:
            sh1, sc1, g1, sh2, sc2, g2 = blk['adaln'](c)[:, None].chunk(6, 2)
            h = ln(x) * (1 + sc1) + sh1
            x = x + g1 * F.dropout(blk['o'](attention(blk['q'](h), blk['k'](h), blk['v'](h), s['heads'])), drop)
            hc = blk['norm_cross'](x)
            x = x + F.dropout(blk['co'](attention(blk['cq'](hc), blk['ck'](ctx), blk['cv'](ctx), s['heads'], ctx_mask)), drop)
            h2 = ln(x) * (1 + sc2) + sh2
            x = x + g2 * F.dropout(blk['fc2'](F.dropout(F.gelu(blk['fc1'](h2)), drop)), drop)
        shf, scf = self.final_adaln(c)[:, None].chunk(2, 2)
        out = self.final(ln(x) * (1 + scf) + shf)
        return out.view(b, g, g, p, p, ch).permute(0, 1, 3, 2, 4, 5).reshape(b, s['size'], s['size'], ch)


def prx(x0hat, target_var=1.0, corr_weight=0.1):
    ch = x0hat.shape[-1]
    var_term = (x0hat.var(unbiased=False) - target_var).abs()
    flat = x0hat.reshape(-1, ch)
    centered = flat - flat.mean(0, keepdim=True)
    cov = centered.T @ centered / flat.shape[0]
    variances = centered.square().mean(0)
    corr = cov / torch.sqrt(variances[:, None] * variances[None] + 1e-12)
    corr_term = torch.sqrt(((corr - torch.eye(ch)) ** 2).sum() + 1e-12)
    return var_term + corr_weight * corr_term


def main():
    a = json.loads(sys.argv[1])
    cfg, steps, warmup = a['config'], a['steps'], a['warmup']
    torch.manual_seed(0)
    text, den = TextEncoder(cfg['text']), Denoiser(cfg['denoiser'], cfg['text']['width'])
    o = cfg['optim']
    opt = torch.optim.AdamW([{'params': den.parameters(), 'lr': o['lr']}, {'params': text.parameters(), 'lr': o['lr'] * o['textLrRatio']}],
                            betas=(o['beta1'], o['beta2']), eps=o['eps'], weight_decay=o['weightDecay'], foreach=True)
    params = list(den.parameters()) + list(text.parameters())
    ema = [p.detach().clone() for p in params]
    n_params = sum(p.numel() for p in params)
    B, R, s, t = o['microBatchSize'], cfg['denoiser']['size'], cfg['denoiser'], cfg['text']
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    abar = torch.cumprod(1 - betas, 0).float()
    updates = [0]

    def step():
        for _ in range(o['gradAccumSteps']):
            x0 = torch.rand(B, R, R, s['channels']) * 2 - 1
            ids = torch.randint(0, t['vocabSize'], (B, t['maxTokens']))
            key_mask = torch.arange(t['maxTokens'])[None] < torch.randint(2, t['maxTokens'] + 1, (B, 1))
            ts = torch.randint(0, 1000, (B,))
            ab = abar[ts][:, None, None, None]
            eps = torch.randn_like(x0)
            xt = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
            ctx = text(ids, key_mask)
            ctx_mask = torch.zeros(B, 1, 1, t['maxTokens']).masked_fill(~key_mask[:, None, None, :], -1e9)
            pred = den(xt, ts.float(), ctx, ctx_mask)
            x0hat = (xt - (1 - ab).sqrt() * pred) / ab.sqrt()
            loss = F.mse_loss(pred, eps) + cfg['objective']['prxWeight'] * prx(x0hat)
            (loss / o['gradAccumSteps']).backward()
        torch.nn.utils.clip_grad_norm_(params, o['gradClip'], foreach=True)
        opt.step()
        opt.zero_grad(set_to_none=True)
        updates[0] += 1
        k = updates[0] - 1
        decay = 0.0 if k <= 0 else min(cfg['optim']['ema']['decay'], (1 + k) / (10 + k))
        with torch.no_grad():
            torch._foreach_lerp_(ema, [p.detach() for p in params], 1 - decay)
        return loss.item()

    den.train()
    text.train()
    for _ in range(warmup):
        step()
    t0 = time.perf_counter()
    loss = float('nan')
    for _ in range(steps):
        loss = step()
    elapsed = time.perf_counter() - t0
    out = dict(impl='pytorch', torch=torch.__version__, threads=torch.get_num_threads(), steps=steps,
               batch=B * o['gradAccumSteps'], stepsPerSec=steps / elapsed, samplesPerSec=steps * B * o['gradAccumSteps'] / elapsed,
               msPerStep=elapsed * 1000 / steps, peakRssMiB=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
               parameters=n_params, finalLoss=loss)
    if a.get('profile'):
        from torch.profiler import profile, ProfilerActivity
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            step()
        rows = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)[:10]
        out['profile'] = [dict(op=e.key, ms=e.self_cpu_time_total / 1000, calls=e.count) for e in rows]
        out['profileTotalMs'] = sum(e.self_cpu_time_total for e in prof.key_averages()) / 1000
    print(json.dumps(out))


if __name__ == '__main__':
    main()
