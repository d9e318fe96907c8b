from __future__ import annotations

from msshop.instruments.seed import SeedPlan, batches, make_orders, make_products, make_users


def test_same_seed_same_data_and_more_keeps_the_first() -> None:
    small, large = SeedPlan(10, 5, 20, seed=3), SeedPlan(50, 9, 200, seed=3)
    assert make_users(small) == make_users(SeedPlan(10, 5, 20, seed=3))
    assert make_users(large)[:10] == make_users(small)
    assert make_products(large)[:5] == make_products(small)
    ids = list(range(1, 11)), list(range(1, 6))
    assert list(make_orders(large, *ids))[:20] == list(make_orders(small, *ids))


def test_another_seed_other_data_with_other_natural_keys() -> None:
    a, b = SeedPlan(10, 5, 20, seed=1), SeedPlan(10, 5, 20, seed=2)
    assert {u["name"] for u in make_users(a)} != {u["name"] for u in make_users(b)}
    assert not {p["sku"] for p in make_products(a)} & {p["sku"] for p in make_products(b)}
    ids = [1, 2], [1]
    assert not ({o["request_id"] for o in make_orders(a, *ids)}
                & {o["request_id"] for o in make_orders(b, *ids)})


def test_data_is_realistic_and_valid_for_the_services() -> None:
    plan = SeedPlan(200, 100, 2000, seed=42)
    users = make_users(plan)
    assert len({u["email"] for u in users}) == 200
    assert all("@example.com" in u["email"] and " " in u["name"] for u in users)
    products = make_products(plan)
    assert all(p["price"] > 0 and round(p["price"], 2) == p["price"] for p in products)
    assert any("hat" in p["title"].lower() or "beanie" in p["title"].lower()
               for p in products)
    orders = list(make_orders(plan, list(range(1, 201)), list(range(1, 101))))
    per_user: dict[int, int] = {}
    for order in orders:
        per_user[order["user_id"]] = per_user.get(order["user_id"], 0) + 1
        assert 1 <= order["quantity"] <= 5
    busiest = sorted(per_user.values(), reverse=True)
    assert busiest[0] > 5 * (2000 / 200), "a few people buy a lot"


def test_batches() -> None:
    assert list(batches([1, 2, 3, 4, 5], 2)) == [[1, 2], [3, 4], [5]]
    assert list(batches([], 2)) == []
