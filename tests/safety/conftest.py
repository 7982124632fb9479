import pytest

from accounts.services import user_create

PASSWORD = "a-long-password-9"


@pytest.fixture
def staff():
    return user_create(username="res", password=PASSWORD, role="researcher")


@pytest.fixture
def raters():
    return [user_create(username=f"rater{i}", password=PASSWORD, role="annotator") for i in range(4)]
