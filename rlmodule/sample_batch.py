"""The `SampleBatch` column names the reference uses (a plain dict with RLlib's constants)."""

from __future__ import annotations

from rlmodule.columns import Columns


class SampleBatch(dict):
    """A dict of batch columns carrying RLlib's `SampleBatch` column-name constants."""

    OBS = Columns.OBS
    NEXT_OBS = Columns.NEXT_OBS
    ACTIONS = Columns.ACTIONS
    REWARDS = Columns.REWARDS
    TERMINATEDS = Columns.TERMINATEDS
    TRUNCATEDS = Columns.TRUNCATEDS
    INFOS = Columns.INFOS
    EPS_ID = Columns.EPS_ID
    AGENT_INDEX = "agent_index"
    UNROLL_ID = "unroll_id"
    T = Columns.T
    SEQ_LENS = Columns.SEQ_LENS
    PREV_ACTIONS = "prev_actions"
    PREV_REWARDS = "prev_rewards"
    ACTION_DIST_INPUTS = Columns.ACTION_DIST_INPUTS
    ACTION_PROB = Columns.ACTION_PROB
    ACTION_LOGP = Columns.ACTION_LOGP
    ACTION_DIST = "action_dist"
    VF_PREDS = Columns.VF_PREDS
    VALUES_BOOTSTRAPPED = Columns.VALUES_BOOTSTRAPPED
    STATE_IN = Columns.STATE_IN
    STATE_OUT = Columns.STATE_OUT
