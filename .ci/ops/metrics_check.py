"""GET /metrics parses with prometheus_client's text parser, and its counters move as
emails are sent through a live `pigeon serve`."""

import json
import time
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from pigeon_live import live_pigeon


def scrape(base):
    with urllib.request.urlopen(base + "/metrics", timeout=5) as response:
        assert response.status == 200, response.status
        text = response.read().decode()
    samples = {}
    types = {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples, types


def post(base, key, body):
    request = urllib.request.Request(
        base + "/v1/emails",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 202, response.status


with live_pigeon() as (base, key, sink, _):
    before, types = scrape(base)
    for name in ["pigeon_emails", "pigeon_queue_oldest_due_age_seconds", "pigeon_webhook_deliveries"]:
        assert types.get(name) == "gauge", (name, types.get(name))
    assert types.get("pigeon_delivery_attempt_duration_seconds") == "histogram", types
    sent_before = before.get("pigeon_emails_sent_total", 0)
    for index in range(5):
        post(base, key, {"from": "noreply@acme.example", "to": [f"user{index}@example.com"], "subject": "metrics", "text": "hi"})
    deadline = time.monotonic() + 30
    while True:
        after, types = scrape(base)
        if after.get("pigeon_emails_sent_total", 0) >= sent_before + 5 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert types.get("pigeon_emails_accepted") == "counter" or types.get("pigeon_emails_accepted_total") == "counter", types
    checks = {
        "pigeon_emails_accepted_total": 5,
        "pigeon_emails_sent_total": 5,
        'pigeon_smtp_replies_total{class="2xx"}': 5,
        'pigeon_emails{status="sent"}': 5,
        "pigeon_delivery_attempt_duration_seconds_count": 5,
    }
    for name, delta in checks.items():
        moved = after.get(name, 0) - before.get(name, 0)
        assert moved == delta, f"{name}: moved by {moved}, expected {delta}"
    assert sink.count == 5, sink.count
    print(f"/metrics parsed ({len(after)} samples); counters moved by 5 after 5 emails")
