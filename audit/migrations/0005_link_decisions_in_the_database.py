"""Chain a batch of decisions inside PostgreSQL, in the statement that inserts them.

Why: two web processes appending to one team's chain take turns on the head's row lock, which
is held until COMMIT. When the link was computed in Python between two round trips (lock, then
insert + COMMIT), the lock was also held across the client's own work and its scheduling on
two busy cores, and the second process waited for all of it. Here the client sends the records
already made, cut around their sequence number (``audit.chain.RecordParts``); this function
locks the heads, numbers and hashes the entries (``sha256`` in C) and moves the heads, all in
the one autocommit statement of the writer. The hash is the SDK's ``compute_chain_hash``:
SHA-256 of ``prev_hash || record``, the record being ASCII (``canonical`` escapes the rest).

Returns one row per entry, ``link_ord`` being its 1-based place in the arrays passed in.
"""

from django.db import migrations

LINK_DECISIONS = """
CREATE OR REPLACE FUNCTION audit_link_decisions(team_ids uuid[], befores text[], afters text[])
RETURNS TABLE (link_ord bigint, link_sequence bigint, link_record text, link_prev_hash text, link_hash text)
LANGUAGE plpgsql AS $$
DECLARE
    team uuid;
    head_sequence bigint;
    head_hash text;
    entry record;
BEGIN
    -- Teams in one order in every writer, so two writers cannot deadlock.
    FOR team IN SELECT DISTINCT t FROM unnest(team_ids) AS t ORDER BY t LOOP
        SELECT h.sequence, h.hash INTO head_sequence, head_hash FROM audit_chainhead AS h
            WHERE h.team_id = team AND h.stream = 'decisions' FOR UPDATE;
        IF NOT FOUND THEN
            INSERT INTO audit_chainhead (team_id, stream, sequence, hash) VALUES (team, 'decisions', 0, '')
                ON CONFLICT (team_id, stream) DO NOTHING;
            SELECT h.sequence, h.hash INTO head_sequence, head_hash FROM audit_chainhead AS h
                WHERE h.team_id = team AND h.stream = 'decisions' FOR UPDATE;
        END IF;
        FOR entry IN
            SELECT e.ord, e.before, e.after FROM unnest(team_ids, befores, afters) WITH ORDINALITY
                AS e(team_id, before, after, ord)
            WHERE e.team_id = team ORDER BY e.ord
        LOOP
            link_ord := entry.ord;
            link_sequence := head_sequence + 1;
            link_record := entry.before || link_sequence::text || entry.after;
            link_prev_hash := head_hash;
            link_hash := encode(sha256(convert_to(head_hash || link_record, 'UTF8')), 'hex');
            RETURN NEXT;
            head_sequence := link_sequence;
            head_hash := link_hash;
        END LOOP;
        UPDATE audit_chainhead AS h SET sequence = head_sequence, hash = head_hash
            WHERE h.team_id = team AND h.stream = 'decisions';
    END LOOP;
END;
$$;
"""
DROP_LINK_DECISIONS = "DROP FUNCTION IF EXISTS audit_link_decisions(uuid[], text[], text[]);"


def create_function(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(LINK_DECISIONS, params=None)


def drop_function(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP_LINK_DECISIONS, params=None)


class Migration(migrations.Migration):
    dependencies = [("audit", "0004_chain_archive")]

    operations = [migrations.RunPython(create_function, drop_function)]
