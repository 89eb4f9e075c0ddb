import numpy as np
import pandas as pd
import pytest

from benchmark.errors import UserError
from leaderboard.ablation import fit_slopes, verdict
from protocols.variance_vs_size import select_subset


def _pool(n_subjects=16, videos=2, frames=64) -> pd.DataFrame:
    rows = [(f"s{s}v{v}", f"s{s:02d}", f, -1, "pretrain")
            for s in range(n_subjects) for v in range(videos) for f in range(frames)]
    return pd.DataFrame(rows, columns=["video_id", "subject_id", "frame_idx", "label", "split"])


def test_subset_has_exact_subjects_and_frames():
    idx = _pool()
    cand = np.arange(len(idx))
    for n_subj, n_frames in [(2, 256), (4, 256), (16, 256), (4, 64), (3, 100)]:
        pos = select_subset(idx, cand, n_subj, n_frames, seed=0)
        rows = idx.iloc[pos]
        assert len(pos) == len(set(pos)) == n_frames
        assert rows["subject_id"].nunique() == n_subj
        counts = rows["subject_id"].value_counts()
        assert counts.max() - counts.min() <= 1  # budget shared evenly


def test_subjects_are_nested_across_levels_and_seeded():
    idx = _pool()
    cand = np.arange(len(idx))
    few = set(idx.iloc[select_subset(idx, cand, 2, 64, 0)]["subject_id"])
    many = set(idx.iloc[select_subset(idx, cand, 8, 64, 0)]["subject_id"])
    assert few < many
    other = set(idx.iloc[select_subset(idx, cand, 8, 64, 1)]["subject_id"])
    assert other != many


def test_larger_budget_is_a_denser_stride_through_the_same_videos():
    idx = _pool()
    cand = np.arange(len(idx))
    small = idx.iloc[select_subset(idx, cand, 4, 64, 0)]
    large = idx.iloc[select_subset(idx, cand, 4, 256, 0)]
    assert set(small["subject_id"]) == set(large["subject_id"])
    assert set(small["video_id"]) == set(large["video_id"])  # both videos of every subject are used
    assert large.groupby("video_id")["frame_idx"].apply(lambda f: np.diff(np.sort(f)).max()).max() < \
        small.groupby("video_id")["frame_idx"].apply(lambda f: np.diff(np.sort(f)).max()).max()


def test_only_candidates_are_used():
    idx = _pool()
    cand = np.flatnonzero(idx["subject_id"] < "s08")
    pos = select_subset(idx, cand, 8, 128, 0)
    assert set(pos) <= set(cand)


@pytest.mark.parametrize("n_subj,n_frames,match", [
    (20, 256, "pool has 16 subjects"),
    (2, 512, "has 128 frames, a subset needs 256"),
    (0, 10, "1 <= subjects <= frames"),
])
def test_infeasible_subsets_are_clear_errors(n_subj, n_frames, match):
    idx = _pool()
    with pytest.raises(UserError, match=match):
        select_subset(idx, np.arange(len(idx)), n_subj, n_frames, 0)


def _points(b_div, b_size, noise=0.0, seed=0):
    rng = np.random.default_rng(seed)
    design = [(2, 256), (4, 256), (8, 256), (16, 256), (4, 64), (4, 128), (4, 512)]
    return pd.DataFrame([{"subjects": s, "frames": f,
                          "macro_f1": 0.3 + b_div * np.log2(s) + b_size * np.log2(f) + noise * rng.normal()}
                         for s, f in design])


def test_slopes_recover_a_known_design():
    s = fit_slopes(_points(0.05, 0.01))
    assert s.diversity.mean == pytest.approx(0.05) and s.size.mean == pytest.approx(0.01)
    assert s.difference.mean == pytest.approx(0.04)
    assert s.n_points == 7


def test_slopes_match_statsmodels():
    import statsmodels.api as sm  # a dev dependency: this comparison must run, not skip
    pts = _points(0.03, 0.01, noise=0.02, seed=3)
    s = fit_slopes(pts)
    x = sm.add_constant(np.column_stack([np.log2(pts["subjects"]), np.log2(pts["frames"])]))
    fit = sm.OLS(pts["macro_f1"].to_numpy(), x).fit()
    ci = fit.conf_int(0.05)
    assert s.diversity.mean == pytest.approx(fit.params[1])
    assert (s.diversity.low, s.diversity.high) == pytest.approx(tuple(ci[1]))
    assert (s.size.low, s.size.high) == pytest.approx(tuple(ci[2]))
    assert s.p_diversity == pytest.approx(fit.pvalues[1])
    contrast = fit.t_test([0, 1, -1])
    assert s.p_difference == pytest.approx(float(contrast.pvalue))


def test_verdict_says_only_what_the_fit_supports():
    assert verdict(fit_slopes(_points(0.05, 0.0, noise=0.002))).startswith("Diversity helps")
    assert "diversity helps more than size" in verdict(fit_slopes(_points(0.05, 0.0, noise=0.002)))
    flat = verdict(fit_slopes(_points(0.0, 0.0, noise=0.02, seed=1)))
    assert "no detectable effect" in flat and "do not separate" in flat
    assert "size helps more than diversity" in verdict(fit_slopes(_points(0.0, 0.05, noise=0.002)))
    assert "Too few" in verdict(fit_slopes(_points(0.05, 0.0).iloc[:3]))


def test_bonferroni_widens_the_intervals_and_adjusts_p():
    pts = _points(0.03, 0.0, noise=0.01, seed=2)
    one, four = fit_slopes(pts), fit_slopes(pts, confidence=1 - 0.05 / 4)
    assert four.diversity.low < one.diversity.low and four.diversity.high > one.diversity.high
    assert four.diversity.mean == one.diversity.mean
    p = one.p_difference
    assert f"p={min(1.0, 4 * p):.3f} Bonferroni-adjusted" in verdict(four, n_fits=4)


def test_the_seed_variance_floors_the_fit():
    """Points that happen to lie on a plane give a residual variance near 0; a fit cannot be more
    precise than the downstream-seed noise of its points, so that noise is the floor."""
    exact = _points(0.03, 0.01)
    loose = fit_slopes(exact.assign(noise_var=0.02 ** 2))
    tight = fit_slopes(exact)
    assert tight.diversity.high - tight.diversity.low < 1e-9  # no residuals, no floor: a zero-width interval
    assert loose.diversity.high - loose.diversity.low > 0.01
    assert loose.diversity.mean == pytest.approx(0.03)
    # With noisier residuals than the floor, the residuals decide.
    noisy = _points(0.03, 0.01, noise=0.05, seed=4)
    assert fit_slopes(noisy.assign(noise_var=1e-8)).diversity == fit_slopes(noisy).diversity


def test_fit_points_are_pretraining_runs_and_a_subset_on_both_axes_counts_once():
    from leaderboard.ablation import run_points

    rows = []
    for axis, level, subjects, frames in [("diversity", 0, 2, 96), ("size", 2, 2, 96), ("size", 0, 2, 24)]:
        for ps in (0, 1):
            for seed in range(3):
                rows.append({"axis": axis, "level": level, "subjects": subjects, "frames": frames,
                             "pretrain_seed": ps, "seed": seed, "macro_f1": 0.3 + 0.1 * ps + 0.01 * seed})
    points = run_points(pd.DataFrame(rows))
    assert len(points) == 4  # (2, 96) and (2, 24) × 2 pretraining runs; the shared subset once
    run = points[(points["frames"] == 96)].sort_values("macro_f1")
    assert run["macro_f1"].tolist() == pytest.approx([0.31, 0.41])
    assert run["noise_var"].tolist() == pytest.approx([0.01 ** 2 / 3] * 2)
