"""The model and the mechanisms each disentanglement method relies on."""

import copy

import numpy as np
import pytest
import torch

from avdis import config as C
from avdis.config import FeatureConfig, MethodConfig, ModelConfig
from avdis.logistic import fit_logistic
from avdis.model import disentangle as D
from avdis.model.multitask import PRESET_SIZES, build_model, count_parameters

FEAT = FeatureConfig(n_mels=16, window_s=1.0, fps=4, face_size=16)


def batch(n: int = 6, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {
        "audio": torch.randn(n, FEAT.audio_frames, FEAT.n_mels, generator=g) - 7,
        "audio_mask": torch.ones(n, FEAT.audio_frames, dtype=torch.bool),
        "video": torch.randint(0, 255, (n, FEAT.video_frames, 16, 16, 3), generator=g, dtype=torch.uint8),
        "video_mask": torch.ones(n, FEAT.video_frames, dtype=torch.bool),
        "emotion": torch.randint(0, 4, (n,), generator=g),
        "speaker": torch.randint(0, 5, (n,), generator=g),
        "valid": torch.ones(n, dtype=torch.bool),
    }


def test_reversal_layer_negates_and_scales_gradients():
    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(0), requires_grad=True)
    (D.reverse_grad(x, 0.7) * torch.arange(3.0)).sum().backward()
    torch.testing.assert_close(x.grad, -0.7 * torch.arange(3.0).expand(4, 3))
    torch.testing.assert_close(D.reverse_grad(x, 0.7), x)


def test_unconditional_confusion_loss_is_minimal_at_uniform_output():
    valid = torch.ones(5, dtype=torch.bool)
    critic = D.Critic(adversary=None, target=D.uniform_over_support(torch.full((1, 8), 1 / 8)))
    target = critic.confusion_target(torch.zeros(5, dtype=torch.long))
    uniform = torch.zeros(5, 8)
    peaked = torch.zeros(5, 8)
    peaked[:, 0] = 4.0
    assert D.confusion_loss(uniform, target, valid).item() == pytest.approx(torch.log(torch.tensor(8.0)).item())
    assert D.confusion_loss(peaked, target, valid) > D.confusion_loss(uniform, target, valid)
    logits = torch.randn(5, 8, generator=torch.Generator().manual_seed(0), requires_grad=True)
    D.confusion_loss(logits, target, valid).backward()
    uniform.requires_grad_(True)
    D.confusion_loss(uniform, target, valid).backward()
    assert uniform.grad.abs().max() < 1e-7  # a stationary point
    assert logits.grad.abs().max() > 1e-4


def test_orthogonal_penalty_zero_when_uncorrelated_grows_with_correlation():
    g = torch.Generator().manual_seed(0)
    n, d = 4000, 4
    a = torch.randn(n, d, generator=g)
    noise = torch.randn(n, d, generator=g)
    valid = torch.ones(n, dtype=torch.bool)
    values = [D.canonical_correlation_penalty(a, rho * a + (1 - rho**2) ** 0.5 * noise, valid).item()
              for rho in (0.0, 0.3, 0.6, 0.9)]
    assert values[0] < 1e-3
    assert values == sorted(values) and values[-1] > 0.1
    # exactly uncorrelated columns: exactly zero; identical embeddings: (1 / (1 + ridge))^2 for one dimension
    x = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])
    four = torch.ones(4, dtype=torch.bool)
    assert D.canonical_correlation_penalty(x[:, :1], x[:, 1:], four).item() == pytest.approx(0.0, abs=1e-9)
    assert D.canonical_correlation_penalty(x[:, :1], x[:, :1], four).item() == pytest.approx(
        1 / (1 + D.CCA_RIDGE) ** 2, abs=1e-6)


def test_orthogonal_penalty_is_not_met_by_rotating_the_shared_identity_off_the_axes():
    """The mean squared correlation between coordinates more than halves when z_emo, holding z_id beside an emotion
    code, is rotated: training met the old penalty so while z_emo still predicted z_id with R^2 0.94."""
    g = torch.Generator().manual_seed(0)
    n = 512
    valid = torch.ones(n, dtype=torch.bool)
    codes = torch.randn(8, 8, generator=g)
    z_id = codes[torch.randint(0, 8, (n,), generator=g)] + 0.1 * torch.randn(n, 8, generator=g)
    z_emo = torch.cat([3 * torch.randn(n, 4, generator=g), z_id], 1)
    rotated = z_emo @ torch.linalg.qr(torch.randn(12, 12, generator=g))[0]

    def per_coordinate(a: torch.Tensor, b: torch.Tensor) -> float:
        a, b = (a - a.mean(0)) / a.std(0, unbiased=False), (b - b.mean(0)) / b.std(0, unbiased=False)
        return ((a.T @ b / len(a)) ** 2).mean().item()

    assert per_coordinate(rotated, z_id) < per_coordinate(z_emo, z_id) / 2  # what the old penalty read
    shared = D.canonical_correlation_penalty(z_emo, z_id, valid)
    torch.testing.assert_close(D.canonical_correlation_penalty(rotated, z_id, valid), shared, rtol=1e-4, atol=0)
    torch.testing.assert_close(D.canonical_correlation_penalty(100 * rotated, z_id / 100, valid), shared,
                               rtol=1e-4, atol=0)
    independent = D.canonical_correlation_penalty(torch.randn(n, 12, generator=g), z_id, valid)
    assert independent < shared / 5


def test_orthogonal_penalty_tells_identical_from_independent_at_32_rows_of_64_dimensions():
    """Read on one batch it could not: 32 rows of 64 dimensions read 0.17 independent, 0.19 identical, and 0.17 with
    4 of the 64 directions shared. The running covariance reads each as on many rows (0.25 identical: the ridge)."""
    g = torch.Generator().manual_seed(0)
    valid = torch.ones(32, dtype=torch.bool)

    def after_batches(case: str) -> float:
        running = D.RunningCovariance(128)
        for _ in range(200):
            a, b = torch.randn(32, 64, generator=g), torch.randn(32, 64, generator=g)
            if case == "identical":
                b = a
            elif case == "shared":
                b = torch.cat([a[:, :4], b[:, 4:]], 1)
            value = D.canonical_correlation_penalty(a, b, valid, running).item()
        return value

    independent, shared, identical = (after_batches(case) for case in ("independent", "shared", "identical"))
    assert independent < 0.01 and identical > 0.24
    assert 0.01 < shared < 0.03  # 4 of 64 directions at 0.25 each: 0.016 on many rows


def test_orthogonal_penalty_pushes_at_the_running_covariance_not_this_batchs():
    """The value is the running covariance's; its gradient reaches this batch's rows as if it were theirs: it equals
    the one-batch penalty's where the running covariance is this batch's (the first batch)."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(32, 8, generator=g, requires_grad=True), torch.randn(32, 6, generator=g)
    valid = torch.ones(32, dtype=torch.bool)
    running = D.RunningCovariance(14)
    first = D.canonical_correlation_penalty(a, b, valid, running)
    (grad_first,) = torch.autograd.grad(first, a)
    alone = D.canonical_correlation_penalty(a, b, valid)
    (grad_alone,) = torch.autograd.grad(alone, a)
    torch.testing.assert_close(first, alone)
    torch.testing.assert_close(grad_first, grad_alone)
    assert running.batches.item() == 1
    c, d = torch.randn(32, 8, generator=g), torch.randn(32, 6, generator=g)
    second = D.canonical_correlation_penalty(c, d, valid, running)  # the mean of two batches' covariances
    x = torch.cat([(z - z.mean(0)) for z in (torch.cat([a, b], 1), torch.cat([c, d], 1))]).detach().double()
    torch.testing.assert_close(running.cov, x.T @ x / 64)
    assert second.item() != pytest.approx(D.canonical_correlation_penalty(c, d, valid).item(), rel=1e-3)


def test_orthogonal_penalty_learns_from_batches_of_two_rows():
    """Two rows correlate every direction they span by +-1 and one batch alone read a constant; folded into the
    running covariance they read independent from identical embeddings, with a gradient (train.batch_size 2)."""
    g = torch.Generator().manual_seed(0)
    valid = torch.ones(2, dtype=torch.bool)
    read = {}
    for case in ("independent", "identical"):
        running = D.RunningCovariance(16)
        for _ in range(300):
            a, b = torch.randn(2, 8, generator=g, requires_grad=True), torch.randn(2, 8, generator=g)
            value = D.canonical_correlation_penalty(a, b if case == "independent" else a.detach(), valid, running)
        (grad,) = torch.autograd.grad(value, a)
        assert grad.abs().max() > 1e-4
        read[case] = value.item()
    assert read["independent"] < 0.02 and read["identical"] > 0.24


def _running_covariance_on(rank: int, store: str, out) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    g = torch.Generator().manual_seed(rank)
    rows = (32, 8)[rank]
    a, b = torch.randn(rows, 8, generator=g), torch.randn(rows, 6, generator=g)
    running = D.RunningCovariance(14)
    value = D.canonical_correlation_penalty(a, b, torch.ones(rows, dtype=torch.bool), running)
    out.put((rank, value.item(), running.cov, running.batches.item()))
    dist.destroy_process_group()


def test_orthogonal_running_covariance_is_pooled_over_ranks_by_their_rows(tmp_path):
    """Each rank's buffer started to drift from the others' with its own batches (a checkpoint keeps rank 0's): every
    rank folds in the covariance of all ranks' rows, each rank's weighted by its valid rows (32 and 8 here)."""
    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_running_covariance_on, args=(r, str(tmp_path / "store"), out)) for r in range(2)]
    for p in procs:
        p.start()
    got = sorted((out.get(timeout=120) for _ in procs), key=lambda r: r[0])
    for p in procs:
        p.join(60)
    covs = []
    for rank, rows in ((0, 32), (1, 8)):
        g = torch.Generator().manual_seed(rank)
        x = torch.cat([torch.randn(rows, 8, generator=g), torch.randn(rows, 6, generator=g)], 1).double()
        x = x - x.mean(0)
        covs.append(x.T @ x)  # rows times the rank's covariance
    pooled = (covs[0] + covs[1]) / 40
    assert got[0][1] == got[1][1] and got[0][3] == got[1][3] == 1
    torch.testing.assert_close(got[0][2], pooled)
    torch.testing.assert_close(got[1][2], pooled)


@pytest.mark.parametrize("case", ["constant rows", "two rows", "duplicate rows", "bf16"])
def test_orthogonal_penalty_and_its_gradient_stay_finite_on_degenerate_batches(case):
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(32, 64, generator=g), torch.randn(32, 64, generator=g)
    if case == "constant rows":
        a = torch.ones(32, 64)
    elif case == "two rows":
        a, b = a[:2], b[:2]
    elif case == "duplicate rows":
        a = a[:1].repeat(32, 1)
    else:
        a, b = a.bfloat16(), b.bfloat16()
    a.requires_grad_(True)
    b.requires_grad_(True)
    value = D.canonical_correlation_penalty(a, b, torch.ones(len(a), dtype=torch.bool))
    value.backward()
    assert value.dtype == torch.float32 and 0 <= value.item() < 1
    assert torch.isfinite(a.grad.float()).all() and torch.isfinite(b.grad.float()).all()


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_orthogonal_penalty_of_a_non_finite_valid_row_is_nan_not_a_cholesky_error(bad):
    """NaN, so that the training loop's check names the step and its clips (Cholesky raised a LinAlgError)."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(32, 8, generator=g), torch.randn(32, 8, generator=g)
    a[3, 1] = bad
    assert torch.isnan(D.canonical_correlation_penalty(a, b, torch.ones(32, dtype=torch.bool)))
    assert torch.isnan(D.canonical_correlation_penalty(b, a, torch.ones(32, dtype=torch.bool)))


def test_orthogonal_penalty_stays_on_its_embeddings_device(monkeypatch):
    """Its ridge was made on the CPU: every orthogonal training step on a GPU failed ("Expected all tensors to be on
    the same device"). The meta device stands for a GPU here (its boolean mask needs meta's nonzero to assume every
    row valid)."""
    import torch.fx.experimental._config as fx_config

    monkeypatch.setattr(fx_config, "meta_nonzero_assume_all_nonzero", True)
    a, b = torch.empty(32, 8, device="meta"), torch.empty(32, 6, device="meta")
    value = D.canonical_correlation_penalty(a, b, torch.ones(32, dtype=torch.bool, device="meta"))
    assert value.device.type == "meta" and value.shape == ()
    running = D.RunningCovariance(14).to("meta")  # as the Stepper makes it, on the engine's device
    value = D.canonical_correlation_penalty(a, b, torch.ones(32, dtype=torch.bool, device="meta"), running)
    assert value.device.type == "meta" and value.shape == () and running.cov.device.type == "meta"


def test_masked_losses_ignore_padding_rows():
    logits, target = torch.randn(4, 3, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 1, 2, 0])
    valid = torch.tensor([True, True, False, False])
    changed = logits.clone()
    changed[2:] = 100.0
    assert D.masked_ce(logits, target, valid) == D.masked_ce(changed, target, valid)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_masked_losses_and_their_gradients_stay_finite_with_a_padding_row_of_nan_or_inf_logits(bad):
    # a padding row's NaN loss times a 0 mask was NaN: it poisoned the batch's mean and every gradient
    g = torch.Generator().manual_seed(0)
    logits, target = torch.randn(4, 3, generator=g), torch.tensor([0, 1, 2, 0])
    valid = torch.tensor([True, True, False, True])
    poisoned = logits.clone()
    poisoned[2] = bad
    spread = D.uniform_over_support(torch.full((1, 3), 1 / 3))[torch.zeros(4, dtype=torch.long)]
    z = torch.randn(4, 2, generator=g)
    for loss in (lambda x: D.masked_ce(x, target, valid), lambda x: D.confusion_loss(x, spread, valid),
                 lambda x: D.canonical_correlation_penalty(x, z, valid)):
        x = poisoned.clone().requires_grad_(True)
        value = loss(x)
        value.backward()
        torch.testing.assert_close(value, loss(logits))
        assert torch.isfinite(x.grad).all() and not x.grad[2].any()


@pytest.mark.parametrize("modality", ["audio", "visual", "av"])
def test_forward_shapes_per_modality(modality):
    torch.manual_seed(0)
    model = build_model(ModelConfig(modality=modality, emb_dim=8), FEAT, n_emotions=4, n_speakers=5)
    out = model(batch())
    assert out["z_emo"].shape == (6, 8) and out["z_id"].shape == (6, 8)
    assert out["emo_logits"].shape == (6, 4) and out["id_logits"].shape == (6, 5)
    assert (model.audio is None) == (modality == "visual") and (model.visual is None) == (modality == "audio")


def test_padding_rows_do_not_change_real_rows():
    torch.manual_seed(0)
    model = build_model(ModelConfig(emb_dim=8, dropout=0.0), FEAT, 4, 5).eval()
    b = batch()
    with torch.no_grad():
        full = model(b)["z_emo"][:3]
        b2 = {k: v.clone() for k, v in b.items()}
        b2["audio"][3:] = 0
        b2["video"][3:] = 0
        b2["audio_mask"][3:] = False  # padding rows: empty masks must not produce NaN either
        b2["video_mask"][3:] = False
        out = model(b2)["z_emo"]
    torch.testing.assert_close(out[:3], full)
    assert torch.isfinite(out).all()


def test_presets_grow_and_large_is_hundreds_of_millions():
    sizes = {}
    for name in PRESET_SIZES:
        with torch.device("meta"):
            sizes[name] = count_parameters(build_model(ModelConfig(preset=name), FeatureConfig(), 8, 24))
    assert sizes["tiny"] < 200_000 < sizes["base"] < 50_000_000
    assert 100_000_000 < sizes["large"] < 1_000_000_000  # hundreds of millions: where ZeRO sharding matters


def test_every_method_has_its_loss_terms_and_weights_warm_up():
    torch.manual_seed(0)
    model = build_model(ModelConfig(emb_dim=8), FEAT, 4, 5)
    b = batch()
    out = model(b)
    critic = D.Critic(D.Adversary(8, 16, 5, 4), torch.full((4, 5), 0.2))
    expected = {"single_task": {"emotion"}, "multitask": {"emotion", "speaker"},
                "adversarial": {"emotion", "speaker", "adversarial"}, "confusion": {"emotion", "speaker", "confusion"},
                "orthogonal": {"emotion", "speaker", "orthogonal"}, "nullspace": {"emotion", "speaker"}}
    assert set(expected) == set(C.METHODS)  # a new method says here which terms it adds
    for name, terms in expected.items():
        method = D.REGISTRY[name]
        weight = C.WEIGHT_RANGES[name][1] if name in C.WEIGHT_RANGES else None  # the top of its range
        cfg = MethodConfig(name=name, weight=weight)
        losses = method.encoder_losses(out, b, cfg, 0.5, critic if method.adversary else None)
        assert set(losses) == terms
        assert all(torch.isfinite(v) for v in losses.values())
    cfg = MethodConfig(name="adversarial", weight=2.0, adversary={"warmup_epochs": 4})
    assert D.method_weight(cfg, 1.0) == pytest.approx(0.5) and D.method_weight(cfg, 10.0) == 2.0


def test_adversarial_term_pushes_the_encoder_against_the_adversary():
    torch.manual_seed(0)
    z = torch.randn(16, 4, requires_grad=True)
    speaker = torch.randint(0, 3, (16,))
    emotion = torch.randint(0, 2, (16,))
    adv = D.Adversary(4, 8, 3, 2)
    out, b = {"z_emo": z}, {"speaker": speaker, "emotion": emotion, "valid": torch.ones(16, dtype=torch.bool)}
    D._adversarial(out, b, D.Critic(adv), 1.0).backward()
    reversed_grad = z.grad.clone()
    z.grad = None
    D.masked_ce(adv(z, emotion), speaker, b["valid"]).backward()
    torch.testing.assert_close(reversed_grad, -z.grad)


def test_inlp_removes_linear_speaker_information():
    g = torch.Generator().manual_seed(0)
    n, d, s = 600, 8, 4
    speaker = torch.randint(0, s, (n,), generator=g)
    emotion = torch.randint(0, 3, (n,), generator=g)
    z = torch.randn(n, d, generator=g)
    z[:, :2] += 3 * torch.nn.functional.one_hot(speaker, s).float()[:, :2]  # speaker lives in dims 0-1
    z[:, 2] += 2 * emotion.float()  # emotion lives in dim 2
    z[:, 3] += 3 * (speaker == 2).float()
    fit = D.fit_nullspace(z, speaker, emotion, s, 3, iterations=3)
    zp = fit.transform(z)
    before = (fit_logistic(z, speaker, s)(z.double()).argmax(1) == speaker).float().mean()
    after = (fit_logistic(zp, speaker, s)(zp.double()).argmax(1) == speaker).float().mean()
    assert before > 0.8 and after < 0.45, (before, after)
    emo_before = (fit_logistic(z, emotion, 3)(z.double()).argmax(1) == emotion).float().mean()
    emo_after = (fit.emotion_logits(z).argmax(1) == emotion).float().mean()
    assert emo_after > emo_before - 0.03  # the emotion direction survives
    assert torch.linalg.matrix_rank(fit.projection) == d - 3


def test_the_nullspace_emotion_head_reads_an_embedding_of_any_scale_alike():
    """The head's fixed L2 penalty weighed against the embedding's scale: at std 0.005 (a few epochs in) it underfit
    to 0.28 train accuracy where the same embedding at std 1 gave 0.95, and nullspace looked as if it erased emotion."""
    g = torch.Generator().manual_seed(0)
    n, d, s = 400, 16, 4
    speaker = torch.randint(0, s, (n,), generator=g)
    emotion = torch.randint(0, 4, (n,), generator=g)
    z = torch.randn(4, d, generator=g)[emotion] * 0.6 + torch.randn(n, d, generator=g)
    z[:, 0] += 2 * speaker.float()
    accs = []
    for scale in (1.0, 0.005):
        fit = D.fit_nullspace(z * scale, speaker, emotion, s, 4, iterations=2)
        accs.append(float((fit.emotion_logits(z * scale).argmax(1) == emotion).float().mean()))
    assert accs[0] > 0.8 and abs(accs[0] - accs[1]) < 0.01, accs


@pytest.mark.parametrize("conditional", [False, True])
def test_inlp_finds_speaker_directions_that_mix_coordinates_of_unequal_scale(conditional):
    """Speaker information in a rotated 5-dimensional subspace of coordinates of unequal scale: speakers - 1 = 5
    directions take a fresh linear probe to chance, and, within emotions, removing more keeps emotion. Scaled
    per coordinate instead of whitened, the fit removed noise directions first: the probe still read 0.44 after 5."""
    g = torch.Generator().manual_seed(0)
    speakers, emotions, d, n = 6, 3, 16, 900
    spk, emo = torch.randint(0, speakers, (n,), generator=g), torch.randint(0, emotions, (n,), generator=g)
    latent = torch.cat([2 * torch.randn(speakers, 5, generator=g)[spk], 2 * torch.randn(emotions, 2, generator=g)[emo],
                        0.5 * torch.randn(n, d - 7, generator=g)], 1) + 0.3 * torch.randn(n, d, generator=g)
    rotation = torch.linalg.qr(torch.randn(d, d, generator=g)).Q
    z = latent @ rotation.T * torch.linspace(0.2, 5, d)
    tr, te = torch.arange(n) < 600, torch.arange(n) >= 600

    def probe(k: int) -> tuple[float, float]:
        fit = D.fit_nullspace(z[tr], spk[tr], emo[tr], speakers, emotions, k, conditional)
        zp = fit.transform(z)
        fresh = fit_logistic(zp[tr], spk[tr], speakers, l2=1e-4, iters=300)
        return (float((fresh(zp[te].double()).argmax(1) == spk[te]).float().mean()),
                float((fit.emotion_logits(z[te]).argmax(1) == emo[te]).float().mean()))

    speaker_acc, emotion_acc = probe(5)
    assert speaker_acc < 0.25 and emotion_acc > 0.9  # chance 1/6
    if conditional:
        assert probe(12)[1] > 0.85  # the emotion subspace is what is left, and it stays


def test_inlp_stops_where_the_train_clips_leave_no_speaker_direction_to_find(capsys):
    """One train clip per emotion: within emotions the clips are all zero, so each classifier learnt nothing and the
    direction taken from its weights was arbitrary (coordinates 0 and 1 of z_emo were erased). 2 clips in each of 3
    emotions span 3 directions within them: asked for 5, INLP removed 2 arbitrary ones beyond those. It now stops
    there, and the evaluation says so."""
    from avdis.config import Config
    from avdis.train.evaluate import posthoc

    g = torch.Generator().manual_seed(0)
    d, moods = 8, 3 * torch.randn(4, 8, generator=g)
    emo, spk = torch.arange(4), torch.tensor([0, 1, 0, 1])
    fit = D.fit_nullspace(moods[emo] + 0.1 * torch.randn(4, d, generator=g), spk, emo, 2, 4, 2, conditional=True)
    assert torch.equal(fit.projection, torch.eye(d)) and fit.directions == 0  # was rank 6: 2 coordinates erased
    emo, spk = torch.arange(3).repeat(2), torch.tensor([0, 1, 2, 1, 2, 0])
    fit = D.fit_nullspace(moods[emo] + torch.randn(6, d, generator=g), spk, emo, 3, 4, 5, conditional=True)
    assert torch.linalg.matrix_rank(fit.projection) == d - 3 and fit.directions == 3  # was d - 5

    cfg = Config(method=MethodConfig(name="nullspace", weight=5), model=ModelConfig(emb_dim=d))
    emb = {"z_emo": (moods[emo] + torch.randn(6, d, generator=g)).numpy(), "speaker": spk.numpy(),
           "emotion": emo.numpy(), "scheme_split": np.zeros(6, dtype=np.int64)}
    assert posthoc(emb, cfg, 3, 4).directions == 3
    assert ("nullspace removed 3 of the method.weight=5 speaker directions: the 6 train clips' z_emo minus their "
            "emotion's mean have no spread, or none that tells speakers apart, beyond them") in capsys.readouterr().out


def test_a_nullspace_shortfall_is_said_once_a_run_not_every_epoch(capsys):
    """A run evaluates (and fits INLP) every epoch, and the warning that INLP removed fewer directions than
    method.weight was printed at each: a 100-epoch run printed it 100 times. The loop hands each evaluation the last
    fit's directions; the warning comes again only when that number changes."""
    from avdis.train.evaluate import evaluate

    g = torch.Generator().manual_seed(0)
    d, moods = 8, 3 * torch.randn(4, 8, generator=g)
    emo, spk = torch.arange(3).repeat(2), torch.tensor([0, 1, 2, 1, 2, 0])
    emb = {"z_emo": (moods[emo] + torch.randn(6, d, generator=g)).numpy(), "speaker": spk.numpy(),
           "emotion": emo.numpy(), "scheme_split": np.zeros(6, dtype=np.int64),
           "within_split": np.zeros(6, dtype=np.int64), "emo_logits": np.eye(4, dtype=np.float32)[emo.numpy()],
           "id_logits": np.eye(3, dtype=np.float32)[spk.numpy()]}
    cfg = C.Config(method=MethodConfig(name="nullspace", weight=5), model=ModelConfig(emb_dim=d))
    said = [evaluate(emb, cfg, 3, 4, with_probe=False, said=before)[1].directions for before in (None, 3, 2)]
    assert said == [3, 3, 3]  # said at the first, not at the second, again when it changed
    assert capsys.readouterr().out.count("nullspace removed 3 of the method.weight=5 speaker directions") == 2


@pytest.mark.parametrize("conditional", [False, True])
def test_inlp_fit_on_about_as_many_clips_as_dimensions_keeps_held_out_clips_intact(conditional):
    """64 train clips of a 64-dimensional z_emo (8 speakers, 4 emotions), 8 directions removed. Whitened by the
    sample covariance, whose smallest eigenvalues so few clips estimate near 0, the projection mapped back was
    oblique with a norm of 157 (unconditional; 6.9 within emotions): the train clips looked fine (emotion 1.0) while
    the held-out ones came out stretched 7.7x (1.7x) and their emotion accuracy fell to 0.36; the leakage probe,
    fit on the train clips, then also misjudged the stretched test clips."""
    rng = np.random.default_rng(0)
    speakers, emotions, d = 8, 4, 64
    centres, moods = rng.normal(size=(speakers, d)), 2 * rng.normal(size=(emotions, d))

    def clips(per_speaker: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        spk = np.repeat(np.arange(speakers), per_speaker)
        emo = rng.integers(0, emotions, len(spk))
        z = centres[spk] + moods[emo] + rng.normal(size=(len(spk), d))
        return torch.tensor(z, dtype=torch.float32), torch.tensor(spk), torch.tensor(emo)

    (z_tr, spk_tr, emo_tr), (z_te, _, emo_te) = clips(8), clips(8)
    fit = D.fit_nullspace(z_tr, spk_tr, emo_tr, speakers, emotions, speakers, conditional)
    with torch.no_grad():
        held_out = (fit.emotion_logits(z_te).argmax(1) == emo_te).float().mean().item()
        grown = (fit.transform(z_te).norm(dim=1).mean() / (z_te - fit.mean).norm(dim=1).mean()).item()
    assert held_out > 0.9, held_out  # emotion lives in 3 directions the 8 speaker directions need not touch
    assert grown < 1.5, grown  # a projection does not make held-out clips longer
    assert torch.linalg.matrix_norm(fit.projection.double(), ord=2) < 5


@pytest.mark.parametrize("valid", [100, 70, 50, 35])
def test_a_short_clips_modulation_spectrum_is_windowed_over_its_own_frames(valid):
    """The contours' Hann window spanned the padded length, so a clip shorter than it was cut off near the window's
    peak: the edge spread a 5 Hz modulation over the higher rates, the more the shorter the clip (beyond 10 Hz: 5% of
    the spectrum at 70 of 100 frames, 9% at 50, 23% at 35), a length cue in features meant to hear rhythm. A
    full-length clip keeps the window it had (torch.hann_window)."""
    from avdis.model.encoders import ContourFeatures

    torch.manual_seed(0)
    contours, frames, rates, bands = ContourFeatures(16), 100, ContourFeatures.RATES, ContourFeatures.BANDS + 1
    t = torch.arange(frames, dtype=torch.float32)
    x = torch.full((1, frames, 40), 1.75)  # a padded frame: (0 + 7) / 4, as the encoder scales zeros
    x[0, :valid, :10] = 0.2 + 0.5 * torch.sin(2 * torch.pi * 5 * t[:valid] / 100 + 0.3)[:, None]  # 5 Hz at 10 ms
    x[0, :valid, 10:] = 0.1
    mask = t[None] < valid
    share = contours.describe(x, mask)[0, : rates * bands].reshape(rates, bands)[:, 0].exp() - 1e-3  # lowest band
    assert int(share.argmax()) == 4  # 5 Hz
    assert float(share[9:].sum() / share.sum()) < 0.03
    if valid == frames:
        c = x[0, :, :10].mean(-1) - x[0, :, :10].mean()
        spec = torch.fft.rfft(c * torch.hann_window(frames)).abs()[1 : rates + 1]
        torch.testing.assert_close(share, spec / (spec.sum() + 1e-4), atol=1e-4, rtol=1e-3)


@pytest.mark.parametrize("contours", [False, True])
@pytest.mark.parametrize("valid", [61, 58])  # a multiple of the stem's stride 4, and not
def test_the_audio_encoder_reads_no_frame_its_mask_drops(contours, valid):
    """The strided conv stem ran over the padding (log-mel 0, 1.75 once scaled): a clip's embedding changed with
    frames its mask drops (by 0.57 where it is 0.76 in size), and every short clip carried a loud edge where it
    ended. Padding of zeros, of silence or of noise now gives one embedding."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(modality="audio", emb_dim=8, dropout=0.0, contours=contours), FEAT, 4, 5).eval()
    frames = FEAT.audio_frames
    mask = (torch.arange(frames) < valid)[None]
    mel = torch.randn(1, frames, FEAT.n_mels) * 2 - 6
    pads = [mel.clone() for _ in range(3)]
    pads[0][:, valid:], pads[1][:, valid:] = 0.0, -13.8  # what collation writes, and silence
    pads[2][:, valid:] = torch.randn(1, frames - valid, FEAT.n_mels) * 3
    with torch.no_grad():
        outs = [model.audio(p, mask) for p in pads]
    for other in outs[1:]:
        torch.testing.assert_close(other, outs[0], atol=1e-6, rtol=0)


def test_the_audio_encoder_runs_in_bf16_weights_with_float32_contours():
    """DeepSpeed's bf16 engine (train.precision auto on a GPU, or bf16) casts the weights, so the contours got bf16
    frames: torch.fft.rfft raised "Unsupported dtype BFloat16" at the first batch, and bf16 counted the frames of a
    clip past 256 in steps of 2 and more. A 6 s clip (600 frames) in bf16 weights now matches float32 to bf16's
    rounding of the encoder's own layers."""
    from avdis.model.encoders import AudioEncoder

    torch.manual_seed(0)
    full = AudioEncoder(40, 600, 32, 1, 2, 64, 0.0).eval()
    half = copy.deepcopy(full).to(torch.bfloat16)
    mel = torch.randn(2, 600, 40) - 5.0
    mask = torch.arange(600)[None] < torch.tensor([[600], [450]])
    with torch.no_grad():
        want, got = full(mel, mask), half(mel, mask)
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), want, atol=0.1, rtol=0.05)
    scaled = (mel + 7.0) / 4.0  # the description itself is the float32 one, nothing of it rounded with the weights
    torch.testing.assert_close(half.contours.describe(scaled, mask), full.contours.describe(scaled, mask), rtol=0, atol=0)


def test_the_contours_of_a_bf16_encoder_read_the_float32_frames(monkeypatch):
    """Under DeepSpeed's bf16 weights the frames were rounded to bf16 before the contours' float32 description: a
    contour whose swing is a few hundredths of its level moved by up to 1/128 of it (the description of a 4 Hz tremor
    by 1.2%, up to 0.3 in a log share)."""
    from avdis.model.encoders import AudioEncoder, ContourFeatures

    torch.manual_seed(0)
    half = AudioEncoder(40, 100, 32, 1, 2, 64, 0.0).eval().to(torch.bfloat16)
    seen = []
    describe = ContourFeatures.describe
    monkeypatch.setattr(ContourFeatures, "describe", lambda self, x, mask: seen.append(x) or describe(self, x, mask))
    mel = torch.randn(2, 100, 40) * 0.05 - 5.0
    with torch.no_grad():
        half(mel, torch.ones(2, 100, dtype=torch.bool))
    assert torch.equal(seen[0], (mel + 7.0) / 4.0)
