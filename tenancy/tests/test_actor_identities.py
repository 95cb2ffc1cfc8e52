"""``tenancy.actor.actor_identities`` / ``same_actor`` over key lineages: a key minted by a key (by
a key ...) is one actor with every key of its lineage and with the person behind it, however
deep the chain, whatever was deleted in the middle, and without looping on bad data."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from common.errors import PermissionDenied
from tenancy.actor import ActorRecord, actor_identities, same_actor
from tenancy.models import ApiKey, Membership
from tenancy.services import ALL_SCOPES, api_key_create, personal_api_key_create
from tests.factories import TeamFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def team():
    return TeamFactory()


def root_key(team, name: str = "root") -> ApiKey:
    return api_key_create(team=team, name=name, scopes=ALL_SCOPES)[0]


def minted(by: ApiKey, name: str) -> ApiKey:
    return api_key_create(team=by.team, name=name, scopes=ALL_SCOPES, minted_by_key_id=by.id)[0]


def key(api_key: ApiKey) -> ActorRecord:
    return ActorRecord(api_key_id=api_key.id)


def admin_of(team, username: str):
    user = UserFactory(username=username)
    Membership.objects.create(user=user, team=team, role=Membership.Role.ADMIN)
    return user


def test_same_actor__ends_of_a_long_chain__one_actor_in_bounded_queries(team):
    # Given a chain of 20 keys, each minted by the one before
    chain = [root_key(team)]
    for n in range(19):
        chain.append(minted(chain[-1], f"k{n}"))

    # When the leaf's identities are read
    with CaptureQueriesContext(connection) as queries:
        identities = actor_identities(key(chain[-1]))

    # Then every key of the chain is in them, read in a few queries (not one per link)
    assert {("key", k.id) for k in chain} <= identities
    assert len(queries) <= 3
    assert same_actor(key(chain[0]), key(chain[-1]))
    assert same_actor(key(chain[-1]), key(chain[0]))


def test_same_actor__cousins_of_one_lineage__one_actor(team):
    # Given two keys minted from two different keys that one root minted
    root = root_key(team)
    left, right = minted(minted(root, "a"), "a2"), minted(minted(root, "b"), "b2")
    # Then they are one actor, both ways
    assert same_actor(key(left), key(right)) and same_actor(key(right), key(left))


def test_same_actor__keys_of_two_roots__two_actors(team):
    # Given two operator-made keys (create_api_key, seed_demo) and a key minted from each
    a, b = root_key(team, "a"), root_key(team, "b")
    a2, b2 = minted(a, "a2"), minted(b, "b2")
    # Then the two lineages stay apart
    assert not same_actor(key(a2), key(b2))
    assert not same_actor(key(a), key(b2))
    assert ("key", b.id) not in actor_identities(key(a2))


def test_same_actor__middle_key_deleted__ends_stay_one_actor(team):
    # Given root -> middle -> leaf, and the middle key deleted (the Django admin may)
    root = root_key(team)
    middle = minted(root, "middle")
    leaf = minted(middle, "leaf")
    middle.delete()
    leaf.refresh_from_db()
    # Then the leaf forgot its minting key, but not its lineage
    assert leaf.created_by_api_key_id is None
    assert same_actor(key(root), key(leaf))


def test_same_actor__person_and_any_key_minted_from_their_personal_key__one_actor(team):
    # Given dana's personal key, a team key it minted, and one that key minted
    dana = admin_of(team, "dana")
    personal = personal_api_key_create(user=dana, team=team, name="laptop", scopes=ALL_SCOPES)[0]
    child = minted(personal, "ci")
    grandchild = minted(child, "nightly")
    # Then the team keys carry dana as their person, and dana is each of them for four-eyes
    assert (child.user_id, child.created_by_id, grandchild.created_by_id) == (None, dana.id, dana.id)
    for api_key in (personal, child, grandchild):
        assert same_actor(key(api_key), ActorRecord(user_id=dana.id))
        assert same_actor(ActorRecord(user_id=dana.id), key(api_key))
    # And another admin is none of them
    bob = admin_of(team, "bob")
    assert not same_actor(key(grandchild), ActorRecord(user_id=bob.id))


def test_same_actor__lineage_alone_links_a_person__one_actor(team):
    # Given a key of dana's lineage whose person was lost (created_by cleared in the database)
    dana = admin_of(team, "dana")
    personal = personal_api_key_create(user=dana, team=team, name="laptop", scopes=ALL_SCOPES)[0]
    orphan = minted(personal, "ci")
    ApiKey.objects.filter(pk=orphan.pk).update(created_by=None)
    # Then dana's identities still reach it through her personal key's lineage
    assert ("key", orphan.id) in actor_identities(ActorRecord(user_id=dana.id))


def test_actor_identities__lineages_pointing_at_each_other__terminates(team):
    # Given two keys whose lineages were edited to point at each other (a cycle no service makes)
    a, b = root_key(team, "a"), root_key(team, "b")
    ApiKey.objects.filter(pk=a.pk).update(lineage_root=b.id, created_by_api_key=b)
    ApiKey.objects.filter(pk=b.pk).update(lineage_root=a.id, created_by_api_key=a)
    # When the identities are read, Then it ends, with both
    assert {("key", a.id), ("key", b.id)} <= actor_identities(key(a))


def test_api_key_create__minting_key_gone__403_and_nothing_created(team):
    # Given a key deleted after it authenticated
    gone = root_key(team)
    gone_id = gone.id
    gone.delete()
    # When it mints a key, Then refused: nothing four-eyes could not trace is created
    with pytest.raises(PermissionDenied) as refused:
        api_key_create(team=team, name="x", scopes=ALL_SCOPES, minted_by_key_id=gone_id)
    assert refused.value.code == "api_key_gone"
    assert not ApiKey.objects.filter(name="x").exists()
