// The same app against `firegate dev`, without a Clerk account: a tiny
// stand-in for Clerk's useAuth() mints dev tokens from /dev/token. The
// FiregateProvider props are exactly those main.tsx passes from Clerk.
// `firegate dev` serves this build at /react/.
import { FiregateProvider } from '@firegate/react';
import { useCallback, useEffect, useMemo, useState } from 'react';
import { createRoot } from 'react-dom/client';
import { App } from './App.js';

interface DevUser {
  id: string;
  name: string;
  memberships: { org_id: string; org_slug: string; role: string }[];
}

/** useAuth()'s shape: {isSignedIn, userId, orgId, getToken}. */
function useDevAuth(): {
  userId: string | null;
  orgId: string | null;
  getToken: (o?: { skipCache?: boolean }) => Promise<string | null>;
  signIn: (user: string, org: string | null) => void;
  switchOrg: (org: string | null) => void;
  signOut: () => void;
} {
  const params = new URLSearchParams(location.search);
  const [session, setSession] = useState<{ userId: string | null; orgId: string | null }>(() => ({
    userId: params.get('user') ?? sessionStorage.getItem('dev-user'),
    orgId: params.get('org') ?? sessionStorage.getItem('dev-org'),
  }));
  const getToken = useCallback(async (): Promise<string | null> => {
    if (!session.userId) return null;
    const q = new URLSearchParams({ user: session.userId });
    if (session.orgId) q.set('org', session.orgId);
    const res = await fetch(`/dev/token?${q.toString()}`);
    if (!res.ok) throw new Error(`/dev/token: ${res.status}`);
    return ((await res.json()) as { token: string }).token;
  }, [session.userId, session.orgId]);
  return useMemo(
    () => ({
      ...session,
      getToken,
      signIn: (user: string, org: string | null) => {
        sessionStorage.setItem('dev-user', user);
        if (org) sessionStorage.setItem('dev-org', org);
        else sessionStorage.removeItem('dev-org');
        setSession({ userId: user, orgId: org });
      },
      switchOrg: (org: string | null) => {
        if (org) sessionStorage.setItem('dev-org', org);
        else sessionStorage.removeItem('dev-org');
        setSession((s) => ({ ...s, orgId: org }));
      },
      signOut: () => {
        sessionStorage.removeItem('dev-user');
        sessionStorage.removeItem('dev-org');
        setSession({ userId: null, orgId: null });
      },
    }),
    [session, getToken],
  );
}

function DevRoot(): React.ReactNode {
  const auth = useDevAuth();
  const [users, setUsers] = useState<DevUser[] | null>(null);
  useEffect(() => {
    void fetch('/dev/users')
      .then((r) => r.json() as Promise<{ users: DevUser[] }>)
      .then((b) => setUsers(b.users));
  }, []);
  const me = users?.find((u) => u.id === auth.userId);
  const header = (
    <span className="auth">
      {auth.userId ? (
        <>
          <span data-testid="user">{auth.userId}</span>
          <select data-testid="org" value={auth.orgId ?? ''} onChange={(e) => auth.switchOrg(e.target.value || null)}>
            <option value="">(no org)</option>
            {me?.memberships.map((m) => (
              <option key={m.org_id} value={m.org_id}>
                {m.org_slug}
              </option>
            ))}
          </select>
          <button data-testid="sign-out" onClick={auth.signOut}>
            Sign out
          </button>
        </>
      ) : (
        <select data-testid="sign-in" value="" onChange={(e) => {
          const u = users?.find((x) => x.id === e.target.value);
          if (u) auth.signIn(u.id, u.memberships[0]?.org_id ?? null);
        }}>
          <option value="">Sign in as…</option>
          {users?.map((u) => (
            <option key={u.id} value={u.id}>
              {u.name}
            </option>
          ))}
        </select>
      )}
    </span>
  );
  return (
    <FiregateProvider getToken={auth.getToken} userId={auth.userId} orgId={auth.orgId} persistence>
      <App header={header} />
    </FiregateProvider>
  );
}

createRoot(document.getElementById('root')!).render(<DevRoot />);
