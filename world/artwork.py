"""Ground truth for artwork: how the variant shown changes the chance that a member plays a title.

Each title has 3-6 artwork variants, each emphasising one *theme*: a genre (``"genre:Comedy"``),
a cast member (``"cast:<name>"``) or a mood (``"mood:dark"``). The truth, per profile p, title t,
variant a and page position k::

    u[p, t, a]    = alpha[kind(a)] + beta * affinity[p, slot(a)] + gamma[t, a]
    multiplier    = exp(u[p, t, a]) / mean_{a' of t} exp(u[p, t, a'])        (mean 1 over arms)
    base[p, t]    = sigmoid(base_offset + base_scale * z(taste_p . trait_t))
    P(play)       = clip(base[p, t] * multiplier * position_bias(k), 1e-6, 0.95)
    position_bias = 1 / log2(2 + k)

``affinity`` is the latent (standardised) taste of a profile for a context *slot*: one slot per
genre, one per mood, and one shared ``"cast:*"`` slot (how much the member responds to stars).
``gamma`` is a small per-variant quality no context can explain. What a policy may observe is
``context(p)``: the affinities plus Gaussian noise, in the order of ``context_names``. A theme
maps to a slot by exact name, else by ``"<kind>:*"``; unknown themes have no slot (affinity 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

KIND_EFFECT = {"genre": 0.0, "cast": 0.15, "mood": -0.1}  # alpha: cast-led art is a little better
ARM_NO_SLOT = -1
CHUNK = 1 << 18


@dataclass(frozen=True)
class ArtworkTruthConfig:
    """Strength of each effect. ``beta`` is the log-multiplier per standard deviation of affinity."""

    beta: float = 0.9
    gamma_sd: float = 0.1
    context_noise_sd: float = 0.25
    base_offset: float = -2.2
    base_scale: float = 0.8


@dataclass(frozen=True)
class ArtworkTruth:
    """The world's artwork response model. Arrays are indexed by profile/title *position* (0-based).

    ``affinity``: (P, S) latent slot affinities; ``observed``: (P, S) what a policy sees;
    ``arm_slot``/``arm_alpha``/``arm_gamma``: (T, A_max) per variant, padded where
    ``arm_mask`` is False; ``base_logit``: (P, T) is computed lazily from tastes and traits.
    """

    context_names: tuple[str, ...]
    affinity: np.ndarray  # float64 (P, S)
    observed: np.ndarray  # float32 (P, S)
    arm_slot: np.ndarray  # int32 (T, A_max), ARM_NO_SLOT where the theme maps to no slot
    arm_alpha: np.ndarray  # float64 (T, A_max)
    arm_gamma: np.ndarray  # float64 (T, A_max)
    arm_mask: np.ndarray  # bool (T, A_max)
    tastes: np.ndarray  # float64 (P, d)
    traits: np.ndarray  # float64 (T, d)
    taste_mean: float
    taste_sd: float
    config: ArtworkTruthConfig

    @classmethod
    def build(
        cls,
        profile_tastes: np.ndarray,
        title_traits: np.ndarray,
        artwork_themes: list[list[str]],
        genres: list[list[str]],
        seed: int,
        config: ArtworkTruthConfig | None = None,
    ) -> ArtworkTruth:
        """Draw the truth. ``profile_tastes`` (P, d), ``title_traits`` (T, d); ``artwork_themes[t]``
        lists title t's variants; ``genres[t]`` its genres (used to place genre slots in taste space)."""
        cfg = config or ArtworkTruthConfig()
        tastes = np.asarray(profile_tastes, dtype=np.float64)
        traits = np.asarray(title_traits, dtype=np.float64)
        if tastes.ndim != 2 or traits.ndim != 2 or tastes.shape[1] != traits.shape[1]:
            raise ValueError(f"profile_tastes {tastes.shape} and title_traits {traits.shape} must be (P, d), (T, d)")
        if len(artwork_themes) != len(traits) or len(genres) != len(traits):
            raise ValueError(
                f"artwork_themes ({len(artwork_themes)}) and genres ({len(genres)}) need one entry per title ({len(traits)})"
            )
        if any(len(a) == 0 for a in artwork_themes):
            raise ValueError("artwork_themes: every title needs at least one variant")
        rng = np.random.default_rng(seed)
        d = tastes.shape[1]
        genre_names = sorted({g for gs in genres for g in gs} | {t[6:] for ts in artwork_themes for t in ts if t.startswith("genre:")})
        moods = sorted({t[5:] for ts in artwork_themes for t in ts if t.startswith("mood:")})
        names = tuple([f"genre:{g}" for g in genre_names] + [f"mood:{m}" for m in moods] + ["cast:*"])

        # Directions in taste space: a genre points at the mean trait of its titles.
        directions = np.empty((len(names), d))
        for j, g in enumerate(genre_names):
            members = [i for i, gs in enumerate(genres) if g in gs]
            directions[j] = traits[members].mean(axis=0) if members else rng.normal(size=d)
        directions[len(genre_names) :] = rng.normal(size=(len(names) - len(genre_names), d))
        directions /= np.linalg.norm(directions, axis=1, keepdims=True) + 1e-12
        raw = tastes @ directions.T + 0.5 * rng.normal(size=(len(tastes), len(names))) * tastes.std()
        affinity = (raw - raw.mean(axis=0)) / (raw.std(axis=0) + 1e-12)
        observed = (affinity + cfg.context_noise_sd * rng.normal(size=affinity.shape)).astype(np.float32)

        a_max = max(len(a) for a in artwork_themes)
        arm_slot = np.full((len(traits), a_max), ARM_NO_SLOT, dtype=np.int32)
        arm_alpha = np.zeros((len(traits), a_max))
        arm_mask = np.zeros((len(traits), a_max), dtype=bool)
        slot_index = {n: i for i, n in enumerate(names)}
        for t, themes in enumerate(artwork_themes):
            for a, theme in enumerate(themes):
                kind = theme.split(":", 1)[0]
                arm_slot[t, a] = slot_index.get(theme, slot_index.get(f"{kind}:*", ARM_NO_SLOT))
                arm_alpha[t, a] = KIND_EFFECT.get(kind, 0.0)
                arm_mask[t, a] = True
        arm_gamma = np.where(arm_mask, cfg.gamma_sd * rng.normal(size=arm_mask.shape), 0.0)
        sample = (tastes[rng.integers(0, len(tastes), 4096)] * traits[rng.integers(0, len(traits), 4096)]).sum(axis=1)
        return cls(
            context_names=names,
            affinity=affinity,
            observed=observed,
            arm_slot=arm_slot,
            arm_alpha=arm_alpha,
            arm_gamma=arm_gamma,
            arm_mask=arm_mask,
            tastes=tastes,
            traits=traits,
            taste_mean=float(sample.mean()),
            taste_sd=float(sample.std() + 1e-12),
            config=cfg,
        )

    @property
    def n_arms(self) -> np.ndarray:
        """Variants per title, int (T,)."""
        n_arms: np.ndarray = self.arm_mask.sum(axis=1)
        return n_arms

    def context(self, profile_idx: np.ndarray) -> np.ndarray:
        """Observable context (n, S) float32: noisy slot affinities in ``context_names`` order."""
        return self.observed[np.asarray(profile_idx, dtype=np.int64)]

    def arm_logits(self, profile_idx: np.ndarray, title_idx: np.ndarray) -> np.ndarray:
        """u for every variant of each (profile, title) pair: (n, A_max), -inf where padded."""
        p = np.asarray(profile_idx, dtype=np.int64)
        t = np.asarray(title_idx, dtype=np.int64)
        slots = self.arm_slot[t]
        aff = np.take_along_axis(self.affinity[p], np.maximum(slots, 0), axis=1) * (slots != ARM_NO_SLOT)
        u = self.arm_alpha[t] + self.config.beta * aff + self.arm_gamma[t]
        return np.where(self.arm_mask[t], u, -np.inf)

    def arm_multipliers(self, profile_idx: np.ndarray, title_idx: np.ndarray) -> np.ndarray:
        """Play multiplier of every variant: (n, A_max), mean 1 over each title's variants, 0 where padded."""
        u = self.arm_logits(profile_idx, title_idx)
        e = np.exp(u - u.max(axis=1, keepdims=True))
        multipliers: np.ndarray = e * self.arm_mask[np.asarray(title_idx)].sum(axis=1, keepdims=True) / e.sum(
            axis=1, keepdims=True
        )
        return multipliers

    def play_multiplier(self, profile_idx: np.ndarray, title_idx: np.ndarray, artwork_idx: np.ndarray) -> np.ndarray:
        """The positive factor (n,) by which variant ``artwork_idx`` scales the chance of a play."""
        a = np.asarray(artwork_idx, dtype=np.int64)
        t = np.asarray(title_idx, dtype=np.int64)
        p = np.asarray(profile_idx, dtype=np.int64)
        if np.any(a < 0) or np.any(a >= self.n_arms[t]):
            raise ValueError("artwork_idx: out of range for the title's variants")
        out = np.empty(len(a))
        for lo in range(0, len(a), CHUNK):  # bounded memory for event logs of any size
            sl = slice(lo, lo + CHUNK)
            out[sl] = self.arm_multipliers(p[sl], t[sl])[np.arange(len(a[sl])), a[sl]]
        return out

    def base_probability(self, profile_idx: np.ndarray, title_idx: np.ndarray) -> np.ndarray:
        """Chance of a play (n,) at position 0 with artwork of average appeal."""
        p = np.asarray(profile_idx, dtype=np.int64)
        t = np.asarray(title_idx, dtype=np.int64)
        z = ((self.tastes[p] * self.traits[t]).sum(axis=1) - self.taste_mean) / self.taste_sd
        prob: np.ndarray = 1.0 / (1.0 + np.exp(-(self.config.base_offset + self.config.base_scale * z)))
        return prob

    @staticmethod
    def position_bias(position: np.ndarray) -> np.ndarray:
        """Examination probability of a page position (0-based): 1 at the top, decaying slowly."""
        return 1.0 / np.log2(2.0 + np.asarray(position, dtype=np.float64))

    def play_probability(
        self, profile_idx: np.ndarray, title_idx: np.ndarray, artwork_idx: np.ndarray, position: np.ndarray
    ) -> np.ndarray:
        """The full truth (n,) in (0, 1): base x artwork multiplier x position bias."""
        prob: np.ndarray = (
            self.base_probability(profile_idx, title_idx)
            * self.play_multiplier(profile_idx, title_idx, artwork_idx)
            * self.position_bias(position)
        )
        clipped: np.ndarray = np.clip(prob, 1e-6, 0.95)
        return clipped

    def arm_play_probabilities(self, profile_idx: np.ndarray, title_idx: np.ndarray, position: np.ndarray) -> np.ndarray:
        """P(play) for every variant, (n, A_max), 0 where padded: what the oracle and OPE truth use."""
        base = self.base_probability(profile_idx, title_idx) * self.position_bias(position)
        prob = np.clip(base[:, None] * self.arm_multipliers(profile_idx, title_idx), 1e-6, 0.95)
        return np.where(self.arm_mask[np.asarray(title_idx)], prob, 0.0)
