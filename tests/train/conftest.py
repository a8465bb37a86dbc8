import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    """Bit-exact comparisons need a fixed thread count; one thread is also the fastest on a shared 2-core box."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
