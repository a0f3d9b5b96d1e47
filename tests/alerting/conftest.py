import pytest

from lab.glpi_fake import FakeGlpi


class Clock:
    def __init__(self, t: float = 1_700_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
async def glpi(clock):
    fake = FakeGlpi(app_token="app-token", user_tokens={"user-token": 2}, session_lifetime_s=600, clock=clock)
    await fake.start()
    yield fake
    await fake.stop()
