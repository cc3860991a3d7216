"""How self-improvement judges members (metalearn.meta.selection): acceptance, the kept point,
the generation's best, rank order and passing the previous best. Host-side, from [P, T] task
fitness; the end-to-end runs are in test_self_improve.py."""
import numpy as np

from metalearn.meta import selection as sel


def test_accepted_members_modes():
  start = np.array([[-1.0, -2.0], [-1.0, -2.0], [-1.0, -2.0], [np.nan, -2.0]])
  new = np.array([[-3.0, -1.5],        # mean better, one task worse
                  [-1.5, -2.0],        # mean better, no task worse
                  [-1.0, -2.0],        # unchanged: not an improvement
                  [-1.0, -2.0]])       # from a diverged start
  np.testing.assert_array_equal(sel.accepted_members(start, new, "improved"),
                                [True, True, False, True])
  np.testing.assert_array_equal(sel.accepted_members(start, new, "improved_all"),
                                [False, True, False, True])
  np.testing.assert_array_equal(sel.accepted_members(start, start * np.nan, "improved_all"),
                                [False] * 4)


def test_kept_point_is_the_best_mean_among_points_accepted_against_the_start():
  """improved_all judges each point against the generation's start, not against the point kept
  so far: a later point with a better mean replaces a kept one it does not dominate."""
  start = np.array([[-1.0, -1.0], [-1.0, -1.0]])
  kept = sel.Kept({}, np.array([[-3.0, -1.0], [-3.0, -1.0]]), np.array([2, 2]), start)
  now = np.array([[-2.5, -2.0],     # better mean, no task worse than the start: taken
                  [-4.0, -0.5]])    # better mean, but a task worse than the start: not taken
  np.testing.assert_array_equal(kept.better(now, "improved_all"), [True, False])
  np.testing.assert_array_equal(kept.better(now, "improved"), [True, True])


def test_best_member_by_mean_or_dominant():
  tf = np.array([[-3.0, -1.0],     # best mean, but worse than the previous best on task 1
                 [-2.0, -2.0],     # no task worse: the dominant choice
                 [-1.5, -2.5],     # worse on task 0
                 [np.nan, -9.0]])  # diverged
  prev = [-2.0, -1.5]
  assert sel.best_member(tf) == 0
  assert sel.best_member(tf, prev, "mean") == 0
  assert sel.best_member(tf, prev, "dominant") == 1
  assert sel.best_member(tf, [-9.0, -9.0], "dominant") == 0   # none dominates: the lowest mean


def test_best_by_rank_is_not_carried_by_one_tasks_spread():
  """The 0.8.0 setback (docs/self_improvement.md): the mean crowned a member that drove one
  table's loss to zero while getting worse on the others; ranks per task do not let that spread
  carry it."""
  tf = np.array([[-6.1, -5.08, -3.1, -6.47],    # best on two tasks, second on the third
                 [-5.83, -5.08, -2.48, -8.84],  # lowest mean only through task 3
                 [-5.9, -5.08, -2.9, -6.0],
                 [-4.0, -2.0, -1.0, -3.0]])
  assert sel.best_member(tf, by="mean") == 1
  assert sel.best_member(tf, by="rank") == 0
  np.testing.assert_allclose(sel.rank_score(tf), [0.5, 1.25, 1.25, 3.0])  # ties: mean rank
  score = sel.member_score(tf, "rank")      # equal ranks are ordered by the mean
  assert score[1] < score[2] and np.all(np.floor(score * 8) / 8 == sel.rank_score(tf))
  nan = tf.copy()
  nan[0, 0] = np.nan                        # a diverged run ranks last on that task
  assert sel.rank_score(nan)[0] > sel.rank_score(tf)[0]
  assert np.isinf(sel.member_score(nan, "mean")[0]) and sel.best_member(nan, by="rank") != 0


def test_passing_members_must_be_no_worse_anywhere_and_better_on_the_mean():
  prev = [-2.0, -1.5]
  tf = np.array([[-2.0, -1.5],     # the previous best itself: not a pass
                 [-2.1, -1.5],     # no task worse, mean lower: a pass (margin 0)
                 [-3.0, -1.4],     # much better mean, one task worse: not a pass
                 [np.nan, -9.0]])  # diverged: never
  np.testing.assert_array_equal(sel.passing_members(tf, prev), [False, True, False, False])
  np.testing.assert_array_equal(sel.passing_members(tf, prev, 0.1), [False, False, False, False])
  np.testing.assert_array_equal(sel.passing_members(tf, prev, 0.04), [False, True, False, False])
  # With a tolerance, a member much better on the mean and slightly worse on one task passes
  # (the first self_improve_passed run: two members 1.5 better on the mean, worse on the table
  # by 0.05 and 0.1, never passed generation 0's random best).
  np.testing.assert_array_equal(sel.passing_members(tf, prev, 0.0, 0.15), [False, True, True, False])
  np.testing.assert_array_equal(sel.passing_members(tf, prev, 0.0, 0.05), [False, True, False, False])
  assert sel.best_member(tf, prev, "dominant") == 1
  assert sel.best_member(tf, prev, "dominant", tolerance=0.15) == 2
