import pytest

from .common import make_data


@pytest.fixture
def data():
    return make_data()
