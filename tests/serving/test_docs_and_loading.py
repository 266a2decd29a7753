"""What a newcomer meets first in the service: /docs offline, and honest 503s."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable

from serving_support import Api

from serving.forecasts import ForecastStore

ApiFactory = Callable[..., Api]

PROBLEM = "application/problem+json"


def test_docs_load_every_asset_from_the_service_itself(api: Api) -> None:
    for page in ("/docs", "/redoc"):
        response = api.client.get(page)
        assert response.status_code == 200, page
        assets = re.findall(r'(?:src|href)="([^"]+\.(?:js|css|png))"', response.text)
        assert assets, page
        # No CDN: every script, style sheet and icon is a path of this service.
        assert all(a.startswith("/") for a in assets), assets
        for asset in assets:
            assert api.client.get(asset).status_code == 200, asset


class _SlowChampion:
    # The outside world of the store: a champion that answers only when released.
    model_name = "creditx-fleet-forecaster"

    def __init__(self) -> None:
        self.release = threading.Event()

    def version(self) -> str | None:
        self.release.wait(timeout=30)
        return None

    def forecast(self, version: str, instance_ids: list[str]) -> object:
        raise AssertionError("no champion version to forecast with")


def test_forecasts_answer_loading_then_no_forecasts(make_api: ApiFactory) -> None:
    api = make_api(predictions=False)
    champion = _SlowChampion()
    store = ForecastStore(api.services.forecasts.predictions_dir, champion, api.clock)
    api.services.forecasts = store
    refresh = threading.Thread(target=store.refresh)
    refresh.start()
    try:
        loading = api.client.get("/v1/instances/vm-gold-1/forecast", headers=api.admin())
        assert loading.status_code == 503
        assert loading.headers["content-type"].startswith(PROBLEM)
        assert loading.json()["title"] == "Loading"
        assert loading.headers["retry-after"] == "2"
    finally:
        champion.release.set()
        refresh.join()
    empty = api.client.get("/v1/instances/vm-gold-1/forecast", headers=api.admin())
    assert empty.status_code == 503
    assert empty.json()["title"] != "Loading"
    assert "creditx pipeline predict" in empty.json()["detail"]
    assert "retry-after" not in empty.headers
