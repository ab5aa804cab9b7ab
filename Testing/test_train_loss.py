"""Weak-Net loss, boundary weights and patch sampling, checked against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from weaknet.loss import IGNORE, boundary_weight, weaknet_loss
from weaknet.patches import PatchSampler
from weaknet.prepare import TrainingCase
from weaknet.volume import Geometry


def test_loss_matches_hand_computed_value():
    # batch 1, 2 classes, 1x1x2 voxels; voxel 0 labelled 1, voxel 1 labelled 0
    logits = torch.tensor([[0.0, 2.0], [1.0, 0.0]]).T.reshape(1, 2, 1, 1, 2)  # voxel0: (0,1), voxel1: (2,0)
    target = torch.tensor([1, 0]).reshape(1, 1, 1, 2)
    image = torch.tensor([1.0, -1.0]).reshape(1, 1, 1, 1, 2)
    recon = torch.tensor([0.5, 0.0]).reshape(1, 1, 1, 1, 2)
    weight = torch.tensor([1.0, 0.1]).reshape(1, 1, 1, 1, 2)
    total, ce, wmse = weaknet_loss(logits, target, image, recon, weight, lambda_=0.5)
    ce0 = -math.log(math.e / (1 + math.e))          # softmax(0, 1)[1]
    ce1 = -math.log(math.e ** 2 / (math.e ** 2 + 1))  # softmax(2, 0)[0]
    hand_ce = (ce0 + ce1) / 2
    mean = (1.0 * 1.0 + 0.1 * -1.0) / 1.1            # W-weighted image mean
    var = 1.0 * (1.0 - mean) ** 2 + 0.1 * (-1.0 - mean) ** 2
    hand_wmse = (1.0 * 0.5 ** 2 + 0.1 * 1.0 ** 2) / var  # error over the band's variance, batch of 1
    assert math.isclose(ce.item(), hand_ce, rel_tol=1e-6)
    assert math.isclose(wmse.item(), hand_wmse, rel_tol=1e-6)
    assert math.isclose(total.item(), hand_ce + 0.5 * hand_wmse, rel_tol=1e-6)


def test_loss_ignores_unlabelled_voxels_and_averages_wmse_over_batch():
    logits = torch.zeros(2, 2, 1, 1, 3)
    logits[:, 1] = 3.0
    target = torch.full((2, 1, 1, 3), IGNORE)
    target[0, 0, 0, 0] = 1
    image = torch.tensor([1.0, -1.0, 0.0]).repeat(2, 1).reshape(2, 1, 1, 1, 3)
    image[1] *= 10.0  # another intensity scale: the same share of variance
    recon, weight = torch.zeros(2, 1, 1, 1, 3), torch.ones(2, 1, 1, 1, 3)
    _, ce, wmse = weaknet_loss(logits, target, image, recon, weight, lambda_=1.0)
    assert math.isclose(ce.item(), -math.log(math.e ** 3 / (math.e ** 3 + 1)), rel_tol=1e-6)
    assert math.isclose(wmse.item(), 1.0, rel_tol=1e-6)  # X̂ = the band's mean explains nothing, either scale
    # the patch size does not change R: the same pattern tiled 4 times
    _, _, tiled = weaknet_loss(logits.repeat(1, 1, 1, 1, 4), target.repeat(1, 1, 1, 4), image.repeat(1, 1, 1, 1, 4),
                               recon.repeat(1, 1, 1, 1, 4) + 0.5, weight.repeat(1, 1, 1, 1, 4), 1.0)
    _, _, single = weaknet_loss(logits, target, image, recon + 0.5, weight, 1.0)
    assert math.isclose(tiled.item(), single.item(), rel_tol=1e-5)
    _, ce_none, _ = weaknet_loss(logits, torch.full_like(target, IGNORE), image, None, None, 0.0)
    assert ce_none.item() == 0.0


def test_cauchy_residual_matches_hand_computed_value_and_is_scale_free():
    logits, target = torch.zeros(1, 2, 1, 1, 2), torch.tensor([1, 0]).reshape(1, 1, 1, 2)
    image = torch.tensor([1.0, -1.0]).reshape(1, 1, 1, 1, 2)
    recon = torch.tensor([0.5, 0.0]).reshape(1, 1, 1, 1, 2)
    weight = torch.tensor([1.0, 0.1]).reshape(1, 1, 1, 1, 2)
    _, _, r = weaknet_loss(logits, target, image, recon, weight, 1.0, robust="cauchy")
    mean = (1.0 - 0.1) / 1.1
    var_w = (1.0 * (1.0 - mean) ** 2 + 0.1 * (-1.0 - mean) ** 2) / 1.1  # the band's weighted variance
    hand = (1.0 * math.log1p(0.5 ** 2 / var_w) + 0.1 * math.log1p(1.0 / var_w)) / 1.1
    assert math.isclose(r.item(), hand, rel_tol=1e-6)
    _, _, scaled = weaknet_loss(logits, target, image * 50, recon * 50, weight, 1.0, robust="cauchy")
    assert math.isclose(scaled.item(), r.item(), rel_tol=1e-5)
    # small residuals: the same as the squared term
    _, _, sq = weaknet_loss(logits, target, image, image + 1e-3, weight, 1.0)
    _, _, ca = weaknet_loss(logits, target, image, image + 1e-3, weight, 1.0, robust="cauchy")
    assert math.isclose(sq.item(), ca.item(), rel_tol=1e-3)


def test_dice_term_matches_hand_computed_value_over_labelled_voxels():
    logits = torch.tensor([[0.0, 2.0], [1.0, 0.0], [0.0, 5.0]]).T.reshape(1, 2, 1, 1, 3)
    target = torch.tensor([1, 0, IGNORE]).reshape(1, 1, 1, 3)  # the third voxel is unlabelled
    image = torch.zeros(1, 1, 1, 1, 3)
    _, ce, _ = weaknet_loss(logits, target, image, None, None, 0.0)
    _, seg, _ = weaknet_loss(logits, target, image, None, None, 0.0, dice=True)
    p0, p1 = 1 / (1 + math.exp(-2.0)), 1 / (1 + math.exp(1.0))  # foreground probabilities of voxels 0 and 1
    hand_dice = 1 - (2 * p0 + 1) / (p0 + p1 + 1 + 1)
    assert math.isclose(seg.item() - ce.item(), hand_dice, rel_tol=1e-6)


def test_boundary_weight_band():
    sd = np.array([-6.0, -2.0, 0.0, 2.5, 3.0, 7.0])
    assert boundary_weight(sd, 3.0, 1.0, 0.1).tolist() == [np.float32(0.1), 1, 1, 1, 1, np.float32(0.1)]


def _case(shape, fg_box):
    target = np.zeros(shape, np.uint8)
    target[fg_box] = 1
    image = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    return TrainingCase("c", image, target, np.ones(shape, np.float32), Geometry.create(shape[::-1]))


def test_sampler_is_deterministic_per_epoch_and_sees_object_and_background():
    case = _case((40, 40, 40), (slice(18, 22),) * 3)
    s = PatchSampler([case], (8, 8, 8), batch_size=4)
    a = list(s.epoch(seed=3, epoch=1, steps=5))
    b = list(s.epoch(seed=3, epoch=1, steps=5))
    c = list(s.epoch(seed=3, epoch=2, steps=5))
    assert all(np.array_equal(x.image, y.image) and np.array_equal(x.target, y.target) for x, y in zip(a, b))
    assert not all(np.array_equal(x.image, y.image) for x, y in zip(a, c))
    fg = np.array([(bt.target[i] == 1).any() for bt in a for i in range(4)])
    assert 0 < fg.sum() < fg.size  # some patches hold object, some only background
    assert a[0].image.shape == (4, 1, 8, 8, 8) and a[0].target.dtype == np.int64
    # two DDP ranks take disjoint shares of the same global draw
    r0 = list(s.epoch(3, 1, 2, rank=0, world_size=2))
    r1 = list(s.epoch(3, 1, 2, rank=1, world_size=2))
    assert not np.array_equal(r0[0].image, r1[0].image)


def test_sampler_pads_a_volume_smaller_than_the_patch():
    case = _case((5, 9, 12), (slice(1, 4), slice(2, 6), slice(3, 8)))
    s = PatchSampler([case], (8, 16, 16), batch_size=2, augment=False)
    batch = next(s.epoch(0, 0, 1))
    assert batch.image.shape == (2, 1, 8, 16, 16)
    t = batch.target[0]
    assert (t == IGNORE).sum() == 8 * 16 * 16 - 5 * 9 * 12  # padding is ignored by the loss
    assert (t == 1).sum() == 3 * 4 * 5 and (batch.weight[0, 0][t == IGNORE] == 0).all()


def test_reconstruction_gradient_into_the_core_net_is_capped():
    """``WeakNetPair.cap``: the reconstruction branch's gradient into the logits is scaled down to the cap
    (norm), never up; the reconstruction net's own gradient is untouched; None leaves it as it is."""
    from weaknet.config import NetConfig
    from weaknet.nets import WeakNetPair

    torch.manual_seed(0)
    pair = WeakNetPair(NetConfig(base_channels=4, depth=2), straight_through=None)
    x = torch.randn(1, 1, 8, 8, 8)
    grads = {}
    for cap in (None, 1e-3, 1e3):
        pair.zero_grad(set_to_none=True)
        pair.cap[0] = cap
        logits, recon = pair(x)
        logits.retain_grad()
        (1e3 * recon.square().mean()).backward()
        grads[cap] = (float(logits.grad.norm()), float(next(pair.recon.parameters()).grad.norm()))
    free, capped, loose = grads[None], grads[1e-3], grads[1e3]
    assert free[0] > 1e-3 and capped[0] == pytest.approx(1e-3, rel=1e-4)  # scaled down to the cap
    assert loose[0] == pytest.approx(free[0], rel=1e-6)  # a cap above the gradient changes nothing
    assert capped[1] == pytest.approx(free[1], rel=1e-6)  # the reconstruction net learns as before
