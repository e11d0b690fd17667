"""Column names of batches (RLlib's `Columns`) and the module-id constants."""

from __future__ import annotations

import warnings

DEFAULT_MODULE_ID = "default_policy"
DEFAULT_POLICY_ID = DEFAULT_MODULE_ID
COMPONENT_RL_MODULE = "rl_module"
COMPONENT_LEARNER = "learner"
COMPONENT_LEARNER_GROUP = "learner_group"


class Columns:
    """Names of the columns in a batch flowing through an RLModule."""

    OBS = "obs"
    INFOS = "infos"
    ACTIONS = "actions"
    ACTIONS_FOR_ENV = "actions_for_env"
    REWARDS = "rewards"
    TERMINATEDS = "terminateds"
    TRUNCATEDS = "truncateds"
    NEXT_OBS = "new_obs"
    EPS_ID = "eps_id"
    AGENT_ID = "agent_id"
    MODULE_ID = "module_id"
    SEQ_LENS = "seq_lens"
    T = "t"
    STATE_IN = "state_in"
    STATE_OUT = "state_out"
    ACTION_DIST_INPUTS = "action_dist_inputs"
    ACTION_PROB = "action_prob"
    ACTION_LOGP = "action_logp"
    VF_PREDS = "vf_preds"
    VALUES_BOOTSTRAPPED = "values_bootstrapped"
    ADVANTAGES = "advantages"
    VALUE_TARGETS = "value_targets"
    INTRINSIC_REWARDS = "intrinsic_rewards"
    LOSS_MASK = "loss_mask"


_BAD_ID_CHARS = set('<>:"/\\|?')


def validate_module_id(policy_id: str, error: bool = False) -> None:
    """Warns (or raises ValueError if `error`) when `policy_id` is not a valid module id."""
    msg = None
    if not isinstance(policy_id, str) or not policy_id:
        msg = f"PolicyID `{policy_id}` not valid! IDs must be a non-empty string."
    elif any(c in _BAD_ID_CHARS for c in policy_id) or policy_id[-1] in (" ", "."):
        msg = (
            f"PolicyID `{policy_id}` not valid! IDs must not contain characters "
            "[<>:\"/\\|?] and must not end with a space or a dot."
        )
    if msg is None:
        return
    if error:
        raise ValueError(msg)
    warnings.warn(msg, stacklevel=2)
