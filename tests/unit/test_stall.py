from processor.runtime.stall import Progress, StallState, observe, stalled_for

TP = ("t", 0)


def _feed(*observations: tuple[float, int, int]) -> StallState:
    state = StallState()
    for at, committed, end in observations:
        state = observe(state, Progress(at, {TP: committed}, {TP: end}))
    return state


def test_nothing_waiting_is_never_a_stall():
    state = _feed((0, 10, 10), (100, 10, 10), (200, 10, 10))
    assert stalled_for(state, 300) == 0


def test_waiting_records_and_no_commit_is_a_stall_from_the_first_sighting():
    state = _feed((0, 10, 10), (5, 10, 20), (50, 10, 30), (70, 10, 30))
    assert stalled_for(state, 70) == 65


def test_a_moving_commit_resets_the_clock():
    state = _feed((0, 10, 20), (50, 15, 30), (70, 15, 30))
    assert stalled_for(state, 70) == 20


def test_catching_up_clears_the_stall():
    state = _feed((0, 10, 20), (50, 10, 20), (60, 20, 20))
    assert stalled_for(state, 100) == 0


def test_waiting_counts_partitions_with_no_commit_as_whole():
    assert Progress(0, {}, {("t", 0): 5, ("t", 1): 3}).waiting == 8


def test_a_partition_left_waiting_while_others_move_is_no_stall():
    """A busy worker may serve some partitions first; a stuck consumer moves none."""
    a, b = ("t", 0), ("t", 1)
    state = StallState()
    for at, moving in ((0, 10), (30, 20), (60, 30)):
        state = observe(state, Progress(at, {a: 5, b: moving}, {a: 9, b: moving + 5}))
    assert stalled_for(state, 60) == 0
