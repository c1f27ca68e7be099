"""`method.conditional`: adversarial, confusion and nullspace remove only identity beyond the emotion label.

Each test builds labels where speakers favour emotions (the entangled case) and checks the
mechanism: the confusion optimum is p(speaker | emotion), emotion in z_emo is worth nothing
to the conditional adversary, and conditional INLP removes the speaker direction but not
the emotion direction that unconditional INLP takes with it.
"""

import pytest
import torch

from avdis.config import Config, FeatureConfig, MethodConfig, ModelConfig, TrainConfig
from avdis.data.stream import DatasetInfo
from avdis.logistic import fit_logistic
from avdis.model import disentangle as D
from avdis.model.multitask import build_model
from avdis.train.engine import build_engine
from avdis.train.step import Stepper, train_prior

FEAT = FeatureConfig(n_mels=16, window_s=1.0, fps=4, face_size=16)
S, E = 4, 4


def entangled_labels(n: int = 800, favour: float = 0.8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Speaker s shows emotion s with probability favour + (1 - favour)/E, the others uniformly."""
    g = torch.Generator().manual_seed(seed)
    speaker = torch.randint(0, S, (n,), generator=g)
    other = torch.randint(0, E, (n,), generator=g)
    emotion = torch.where(torch.rand(n, generator=g) < favour, speaker, other)
    return speaker, emotion


def test_conditional_confusion_loss_is_minimal_at_p_speaker_given_emotion():
    speaker, emotion = entangled_labels()
    prior = D.speaker_given_emotion(speaker, emotion, S, E, alpha=0.0)
    assert prior.diagonal().min() > 0.8  # speakers do favour emotions here
    critic = D.Critic(adversary=None, target=prior)
    target, valid = critic.confusion_target(emotion), torch.ones(len(emotion), dtype=torch.bool)
    torch.testing.assert_close(target, prior[emotion])

    def loss(logits: torch.Tensor) -> torch.Tensor:
        return D.confusion_loss(logits, target, valid)

    at_prior = prior[emotion].log().requires_grad_(True)
    loss(at_prior).backward()
    assert at_prior.grad.abs().max() < 1e-6  # a stationary point ...
    perturbed = at_prior.detach() + 0.3 * torch.randn(at_prior.shape, generator=torch.Generator().manual_seed(1))
    uniform = torch.zeros_like(at_prior)
    assert loss(at_prior) < loss(perturbed) - 1e-3 and loss(at_prior) < loss(uniform) - 0.3  # ... and the minimum


def test_prior_is_smoothed_and_read_from_the_train_split_only():
    labels = [(0, 0, "train", "train"), (0, 0, "train", "train"), (1, 1, "train", "test"), (1, 0, "test", "train")]
    info = DatasetInfo(url="", shards=[], emotions=["neutral", "happy"], speakers=["a", "b"], features=FEAT,
                       modalities=("audio",), split_counts={}, manifest_hash="", labels=labels)
    prior = train_prior(info)
    a = D.PRIOR_ALPHA
    expected = torch.tensor([[2 + a, a], [a, 1 + a]]) / torch.tensor([[2 + 2 * a], [1 + 2 * a]])
    torch.testing.assert_close(prior, expected)  # the test clip of speaker 1 with emotion 0 is not counted
    assert prior.min() > 0  # no target a softmax cannot reach


@pytest.mark.parametrize("conditional", [False, True])
def test_confusion_under_speaker_disjoint_aims_only_at_the_speakers_trained_on(conditional):
    """Speakers 2 and 3 are held out: no training batch shows them, so no target may give them mass, and the
    loss must settle where the adversary spreads its output over speakers 0 and 1 as the target says, whatever
    it puts on 2 and 3 (which it learns never to pick)."""
    labels = [(0, 0, "train", "train"), (0, 1, "train", "train"), (1, 1, "train", "train"), (1, 0, "train", "train"),
              (2, 0, "test", "train"), (3, 1, "val", "train")]
    info = DatasetInfo(url="", shards=[], emotions=["neutral", "happy"], speakers=["a", "b", "c", "d"], features=FEAT,
                       modalities=("audio",), split_counts={}, manifest_hash="", labels=labels)
    st = stepper("confusion", conditional, train_prior(info), n_speakers=4)
    assert (st.target[:, 2:] == 0).all() and torch.allclose(st.target.sum(1), torch.ones(2))
    emotion = torch.tensor([0, 1, 0, 1])
    target, valid = st.target[emotion], torch.ones(4, dtype=torch.bool)
    logits = torch.cat([target[:, :2].log(), torch.full((4, 2), -3.0)], dim=1).requires_grad_(True)
    loss = D.confusion_loss(logits, target, valid)
    loss.backward()
    assert logits.grad.abs().max() < 1e-6  # the floor: nothing left to push z_emo towards
    entropy = -(target[:, :2] * target[:, :2].log()).sum(1).mean()
    assert loss.item() == pytest.approx(entropy.item(), abs=1e-6)


def adversary_loss(adversary: D.Adversary, z: torch.Tensor, emotion: torch.Tensor, speaker: torch.Tensor) -> float:
    """The adversary's train loss after fitting it to (z_emo, emotion) -> speaker: what it can get out of them."""
    torch.manual_seed(0)
    for p in adversary.parameters():
        torch.nn.init.normal_(p, std=0.1)
    opt = torch.optim.Adam(adversary.parameters(), lr=0.1)
    valid = torch.ones(len(z), dtype=torch.bool)
    for _ in range(100):
        opt.zero_grad()
        D.masked_ce(adversary(z, emotion), speaker, valid).backward()
        opt.step()
    with torch.no_grad():
        return D.masked_ce(adversary(z, emotion), speaker, valid).item()


@pytest.mark.parametrize("conditional", [False, True])
def test_emotion_in_z_emo_helps_only_the_unconditional_adversary(conditional):
    """The gain an adversary gets from z_emo = one-hot emotion over z_emo = constant is what the
    reversed gradient rewards erasing: unconditional, emotion itself; conditional, nothing."""
    speaker, emotion = entangled_labels(400)
    carries_emotion = torch.nn.functional.one_hot(emotion, E).float()
    constant = torch.zeros_like(carries_emotion)
    adversary = D.Adversary(E, 32, S, n_emotions=E if conditional else 0)
    gain = (adversary_loss(adversary, constant, emotion, speaker)
            - adversary_loss(adversary, carries_emotion, emotion, speaker))
    if conditional:
        assert abs(gain) < 0.01, gain
    else:
        assert gain > 0.5, gain  # H(S) - H(S | E) here is about 0.8 nats


def stepper(name: str, conditional: bool, prior: torch.Tensor | None, n_speakers: int = S) -> Stepper:
    cfg = Config(model=ModelConfig(emb_dim=8, dropout=0.0),
                 method=MethodConfig(name=name, weight=1.0, conditional=conditional), train=TrainConfig(lr=0.01, epochs=1))
    torch.manual_seed(0)
    model = build_model(cfg.model, FEAT, len(prior) if prior is not None else E, n_speakers)
    return Stepper(build_engine(model, cfg.train, False), D.REGISTRY[name], cfg, n_speakers, prior)


def test_stepper_builds_the_conditional_adversary():
    prior = torch.full((E, S), 1.0 / S)
    cond, plain = stepper("confusion", True, prior), stepper("confusion", False, prior)
    assert cond.adversary.net[0].in_features == 8 + E and plain.adversary.net[0].in_features == 8
    torch.testing.assert_close(plain.target, torch.full((E, S), 1.0 / S))  # unconditional confusion aims at uniform
    cond.load_state_dict(stepper("confusion", True, prior).state_dict())  # its checkpointed state loads
    for conditional in (True, False):
        with pytest.raises(ValueError, match="train_prior"):
            stepper("adversarial", conditional, None)


def speaker_within_emotion_corpus(n: int = 800) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Speakers 0,1 show only emotion 0, speakers 2,3 only emotion 1: emotion direction (dim 0)
    predicts half of the speaker; an independent direction (dim 1) tells each pair apart."""
    g = torch.Generator().manual_seed(0)
    speaker = torch.randint(0, 4, (n,), generator=g)
    emotion = speaker // 2
    z = 0.3 * torch.randn(n, 12, generator=g)
    z[:, 0] += 2.0 * emotion
    z[:, 1] += 1.0 * (speaker % 2)
    return z, speaker, emotion


@pytest.mark.parametrize("iterations", [1, 2])
def test_conditional_nullspace_removes_identity_beyond_emotion_and_keeps_emotion(iterations):
    z, speaker, emotion = speaker_within_emotion_corpus()

    def scores(conditional: bool) -> tuple[float, float]:
        fit = D.fit_nullspace(z, speaker, emotion, 4, 2, iterations, conditional)
        zp = fit.transform(z)
        emotion_acc = (fit.emotion_logits(z).argmax(1) == emotion).float().mean().item()
        speaker_acc = (fit_logistic(zp, speaker, 4)(zp.double()).argmax(1) == speaker).float().mean().item()
        return emotion_acc, speaker_acc

    emo_cond, spk_cond = scores(True)
    emo_plain, spk_plain = scores(False)
    # the label alone names the speaker pair (speaker accuracy 0.5): conditional leaves just that
    assert emo_cond > 0.99 and spk_cond < 0.56, (emo_cond, spk_cond)
    assert emo_plain < 0.75, emo_plain  # unconditional INLP takes the emotion direction too
