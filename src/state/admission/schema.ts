/**
 * The PostgreSQL objects of cluster-wide admission (see postgres.ts): the
 * windows' slot rings, the concurrency holds and `admission_take`. Created by
 * the state migration `0003-cluster-admission` (src/state/migrations), so they
 * are versioned with the rest of the schema; a change is a new migration
 * (`CREATE OR REPLACE FUNCTION` for the function).
 */
export const ADMISSION_SCHEMA = `
CREATE TABLE IF NOT EXISTS admission_window (
  key text NOT NULL,
  window_ms double precision NOT NULL,
  lim integer NOT NULL,
  head integer NOT NULL,
  cnt integer NOT NULL,
  PRIMARY KEY (key, window_ms)
);
CREATE TABLE IF NOT EXISTS admission_start (
  key text NOT NULL,
  window_ms double precision NOT NULL,
  slot integer NOT NULL,
  at double precision NOT NULL,
  PRIMARY KEY (key, window_ms, slot)
);
CREATE TABLE IF NOT EXISTS admission_hold (
  id text PRIMARY KEY,
  key text NOT NULL,
  expires_at double precision NOT NULL
);
CREATE INDEX IF NOT EXISTS admission_hold_key ON admission_hold (key, expires_at);

-- Admits up to p_count starts of p_key now: every window (p_limits[i] starts in any
-- p_windows[i] ms) and the concurrency cap p_max (NULL: none) allowing. Time is the
-- server's clock_timestamp() in ms. Returns how many were admitted, and when not all:
-- retry_after_ms until the windows admit the next one (0: they would now) and
-- blocked_by ('rate' or 'concurrency').
CREATE OR REPLACE FUNCTION admission_take(
  p_key text, p_limits integer[], p_windows double precision[], p_max integer, p_count integer,
  p_hold_ids text[], p_lease_ms double precision,
  OUT granted integer, OUT retry_after_ms double precision, OUT blocked_by text)
LANGUAGE plpgsql AS $fn$
DECLARE
  now_ms double precision;
  n integer := coalesce(array_length(p_limits, 1), 0);
  v_heads integer[] := '{}';
  v_cnts integer[] := '{}';
  k integer := p_count;
  i integer;
  m integer;
  v_lim integer;
  v_win double precision;
  v_wh integer;
  v_wc integer;
  v_wl integer;
  v_avail integer;
  r record;
  v_ats double precision[];
  v_live integer;
  conc_blocked boolean := false;
  t double precision;
BEGIN
  PERFORM pg_advisory_xact_lock(hashtext('ia-admission:' || p_key));
  now_ms := extract(epoch from clock_timestamp()) * 1000;
  -- Pass 1: how many each window admits now.
  FOR i IN 1 .. n LOOP
    v_lim := p_limits[i];
    v_win := p_windows[i];
    SELECT w.head, w.cnt, w.lim INTO v_wh, v_wc, v_wl FROM admission_window w WHERE w.key = p_key AND w.window_ms = v_win;
    IF NOT FOUND THEN
      INSERT INTO admission_window (key, window_ms, lim, head, cnt) VALUES (p_key, v_win, v_lim, 0, 0);
      v_wh := 0; v_wc := 0;
    ELSIF v_wl <> v_lim THEN
      -- The limit changed: keep the most recent starts (they still count), oldest first in slots 0..m-1.
      SELECT coalesce(array_agg(s.at ORDER BY s.at), '{}') INTO v_ats
        FROM (SELECT a.at FROM admission_start a WHERE a.key = p_key AND a.window_ms = v_win ORDER BY a.at DESC LIMIT v_lim) s;
      DELETE FROM admission_start a WHERE a.key = p_key AND a.window_ms = v_win;
      INSERT INTO admission_start (key, window_ms, slot, at)
        SELECT p_key, v_win, u.o - 1, u.a FROM unnest(v_ats) WITH ORDINALITY AS u(a, o);
      v_wc := coalesce(array_length(v_ats, 1), 0);
      v_wh := v_wc % v_lim;
      UPDATE admission_window w SET lim = p_limits[i], head = v_wh, cnt = v_wc WHERE w.key = p_key AND w.window_ms = v_win;
    END IF;
    v_heads := v_heads || v_wh;
    v_cnts := v_cnts || v_wc;
    v_avail := v_lim - v_wc; -- slots never used
    IF v_avail < k THEN
      -- Used slots, oldest first, that have left the window: a prefix of the ring from its head.
      m := 0;
      FOR r IN
        SELECT a.at FROM generate_series(0, least(k - v_avail, v_wc) - 1) AS g(j)
          JOIN admission_start a ON a.key = p_key AND a.window_ms = v_win AND a.slot = (v_wh + v_avail + g.j) % v_lim
          ORDER BY g.j
      LOOP
        EXIT WHEN r.at > now_ms - v_win;
        m := m + 1;
      END LOOP;
      k := least(k, v_avail + m);
    END IF;
  END LOOP;
  -- Concurrency: live leases of the key.
  IF p_max IS NOT NULL AND k > 0 THEN
    DELETE FROM admission_hold h WHERE h.key = p_key AND h.expires_at <= now_ms;
    SELECT count(*) INTO v_live FROM admission_hold h WHERE h.key = p_key;
    IF p_max - v_live < k THEN
      k := greatest(0, p_max - v_live);
      conc_blocked := true;
    END IF;
  END IF;
  -- Pass 2: record the k starts; when short, when the windows admit the next one.
  retry_after_ms := 0;
  FOR i IN 1 .. n LOOP
    v_lim := p_limits[i];
    v_win := p_windows[i];
    v_wh := v_heads[i];
    v_wc := v_cnts[i];
    IF k < p_count AND v_wc + k >= v_lim THEN
      IF k >= v_lim THEN
        t := now_ms; -- the next to leave is one of this batch
      ELSE
        SELECT a.at INTO t FROM admission_start a
          WHERE a.key = p_key AND a.window_ms = v_win AND a.slot = (v_wh + k) % v_lim;
      END IF;
      retry_after_ms := greatest(retry_after_ms, t + v_win - now_ms);
    END IF;
    IF k > 0 THEN
      INSERT INTO admission_start (key, window_ms, slot, at)
        SELECT p_key, v_win, (v_wh + g.j) % v_lim, now_ms FROM generate_series(0, k - 1) AS g(j)
        ON CONFLICT (key, window_ms, slot) DO UPDATE SET at = EXCLUDED.at;
      UPDATE admission_window w SET head = (v_wh + k) % v_lim, cnt = least(v_lim, v_wc + k) WHERE w.key = p_key AND w.window_ms = v_win;
    END IF;
  END LOOP;
  IF p_max IS NOT NULL AND k > 0 THEN
    INSERT INTO admission_hold (id, key, expires_at) SELECT u.id, p_key, now_ms + p_lease_ms FROM unnest(p_hold_ids[1:k]) AS u(id);
  END IF;
  granted := k;
  blocked_by := CASE WHEN k >= p_count THEN NULL WHEN conc_blocked THEN 'concurrency' ELSE 'rate' END;
END
$fn$;
`;
