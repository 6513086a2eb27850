// The app itself: the active org's tasks, live, with optimistic writes.
// It only talks to @firegate/react; how the user signed in (Clerk, or dev
// tokens in tests) is decided by the entry point (main.tsx or dev.tsx).
import { collection, serverTimestamp, useCollection, useConnectionState, useWrite, type Timestamp } from '@firegate/react';
import { useState, type ReactNode } from 'react';

/** A task document as the app sees it (created_at decoded to a Timestamp). */
export interface Task {
  org_id: string;
  title: string;
  status: 'open' | 'done';
  visibility: 'public' | 'private';
  assignee?: string;
  created_at?: Timestamp;
}

const tasks = collection<Task>('tasks', { fields: { created_at: 'timestamp' } }).orderBy('created_at', 'desc');

export function App({ header }: { header?: ReactNode }): ReactNode {
  const { data, status, error, fromCache } = useCollection(tasks);
  const conn = useConnectionState();
  const write = useWrite();
  const [title, setTitle] = useState('');

  const add = (e: React.FormEvent): void => {
    e.preventDefault();
    if (!title.trim()) return;
    write.add('tasks', { title: title.trim(), status: 'open', visibility: 'public', created_at: serverTimestamp() }).catch(() => undefined);
    setTitle('');
  };

  return (
    <main>
      <header>
        <h1>Tasks</h1>
        {header}
        <span className="pill" data-testid="connection">{conn}</span>
        <span className="pill" data-testid="status">
          {status}
          {fromCache ? ' (cache)' : ''}
        </span>
      </header>
      {error && <p className="error" data-testid="error">{error.message}</p>}
      {write.error && <p className="error" data-testid="write-error">{write.error.message}</p>}
      <form onSubmit={add}>
        <input data-testid="new-title" value={title} onChange={(e) => setTitle(e.target.value)} placeholder="New task" />
        <button type="submit" data-testid="add">Add</button>
      </form>
      <ul data-testid="tasks">
        {data.map((t) => (
          <li key={t.id} data-id={t.id} data-org={t.data.org_id} data-pending={String(t.pending)} className={t.pending ? 'pending' : ''}>
            <input
              type="checkbox"
              checked={t.data.status === 'done'}
              onChange={() => write.update(t.path, { status: t.data.status === 'done' ? 'open' : 'done' }).catch(() => undefined)}
            />
            <span className="title">{t.data.title}</span>
            {t.pending && <em> (saving…)</em>}
            <button onClick={() => write.remove(t.path).catch(() => undefined)} aria-label={`delete ${t.data.title}`}>
              ×
            </button>
          </li>
        ))}
      </ul>
    </main>
  );
}
