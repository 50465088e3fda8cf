package state

const helperEnv = "DPSBATCH_STATE_TEST_HELPER"

func runHelper(role string) int { return 2 }
