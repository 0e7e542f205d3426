/**
 * A small OpenAI-compatible mana-llm stand-in (docs/contract.md §4) on 127.0.0.1,
 * port 0. Each call to POST /v1/chat/completions takes the next scripted
 * reply (then the default one): a plan, prose, invalid JSON, an unknown tool,
 * a missing rationale or parameter, a 429 with Retry-After, a 500, or a hang,
 * optionally with the token `usage` mana-llm reports. Every
 * request is recorded, so tests can assert what was (or was not) sent.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface RecordedRequest {
  n: number;
  /** ms since the epoch when the request arrived. */
  at: number;
  method: string;
  path: string;
  authorization: string | undefined;
  body: { model?: unknown; temperature?: unknown; messages?: { role: string; content: string }[] } | null;
  /** The user message's content ('' when absent). */
  user: string;
  /** The system message's content ('' when absent). */
  system: string;
}

export type StubReply =
  /** 200 with `choices[0].message.content`, optionally after a delay and with a `usage` object. */
  | { kind: 'content'; content: string; delayMs?: number; usage?: Usage }
  /** Any status with an optional body and headers (429 + Retry-After, 500 …). */
  | { kind: 'status'; status: number; headers?: Record<string, string>; body?: string; delayMs?: number }
  /** Reads the request and never answers (until the stub closes or the client gives up). */
  | { kind: 'hang' };

/** Decides a reply from the request; lets one stub serve many missions differently. */
export type ReplyFn = (req: RecordedRequest) => StubReply;

/** A completion's `usage`, as OpenAI-compatible servers report it. */
export interface Usage {
  prompt_tokens?: number;
  completion_tokens?: number;
  total_tokens?: number;
}

export interface PlanStepSpec {
  summary: string;
  toolName: string;
  params: Record<string, unknown>;
  rationale?: string;
}

const DEFAULT_STEPS: PlanStepSpec[] = [
  { summary: 'Write down the next task', toolName: 'create_task', params: { title: 'Draft the outline', priority: 'high' }, rationale: 'The objective needs an outline first' },
  { summary: 'Note the idea', toolName: 'create_note', params: { title: 'Ideas', body: 'First thoughts' }, rationale: 'Keeps the context for the next run' },
];

/** Canned replies, one per failure mode the planner must survive. */
export const reply = {
  /** A valid plan as a fenced ```json block inside a little prose. */
  plan(steps: PlanStepSpec[] = DEFAULT_STEPS, opts: { summary?: string; delayMs?: number; usage?: Usage } = {}): StubReply {
    const json = JSON.stringify({ summary: opts.summary ?? 'Move the mission forward', steps });
    return {
      kind: 'content',
      content: `Here is the plan:\n\`\`\`json\n${json}\n\`\`\``,
      ...(opts.delayMs === undefined ? {} : { delayMs: opts.delayMs }),
      ...(opts.usage === undefined ? {} : { usage: opts.usage }),
    };
  },
  /** A valid plan with no steps (a no-op run), as a bare object. */
  emptyPlan(): StubReply {
    return { kind: 'content', content: JSON.stringify({ summary: 'Nothing to do today', steps: [] }) };
  },
  prose(): StubReply {
    return { kind: 'content', content: 'I think you should start by writing an outline and then take a walk.' };
  },
  invalidJson(): StubReply {
    return { kind: 'content', content: '```json\n{"summary": "Broken", "steps": [ {"summary": "x",, }\n```' };
  },
  unknownTool(): StubReply {
    return reply.plan([{ summary: 'Delete everything', toolName: 'delete_all_tasks', params: {}, rationale: 'Clean slate' }]);
  },
  missingRationale(): StubReply {
    return reply.plan([{ summary: 'A task', toolName: 'create_task', params: { title: 'No reason given' } }]);
  },
  missingParam(): StubReply {
    return reply.plan([{ summary: 'A task', toolName: 'create_task', params: {}, rationale: 'Untitled on purpose' }]);
  },
  rateLimited(retryAfterSeconds: number): StubReply {
    return { kind: 'status', status: 429, headers: { 'retry-after': String(retryAfterSeconds) }, body: '{"error":{"message":"rate limited"}}' };
  },
  serverError(): StubReply {
    return { kind: 'status', status: 500, body: '{"error":{"message":"internal"}}' };
  },
  hang(): StubReply {
    return { kind: 'hang' };
  },
};

export interface LlmStub {
  /** Base URL for MANA_LLM_URL. */
  url: string;
  requests: RecordedRequest[];
  /** Queues replies for the next calls, in order; afterwards the default answers. */
  script(...replies: StubReply[]): void;
  /** Replaces the default reply (used once the script is empty). */
  setDefault(r: StubReply | ReplyFn): void;
  /** Requests whose user message contains `text` (e.g. a mission title). */
  requestsFor(text: string): RecordedRequest[];
  /** Most requests open at once so far (shows a client's concurrency limit). */
  maxInFlight(): number;
  close(): Promise<void>;
}

function send(res: ServerResponse, status: number, body: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...headers });
  res.end(body);
}

function completion(content: string, usage?: Usage): string {
  return JSON.stringify({
    id: 'chatcmpl-stub',
    object: 'chat.completion',
    created: Math.floor(Date.now() / 1000),
    model: 'stub',
    choices: [{ index: 0, message: { role: 'assistant', content }, finish_reason: 'stop' }],
    ...(usage ? { usage } : {}),
  });
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/** Starts the stub; `defaultReply` answers when no scripted reply is queued (a valid plan unless told). */
export async function startLlmStub(defaultReply: StubReply | ReplyFn = reply.plan()): Promise<LlmStub> {
  const requests: RecordedRequest[] = [];
  const queue: StubReply[] = [];
  let fallback: ReplyFn = typeof defaultReply === 'function' ? defaultReply : () => defaultReply;
  const timers = new Set<NodeJS.Timeout>();
  let open = 0;
  let maxOpen = 0;

  const server = createServer((req, res) => {
    res.on('error', () => undefined);
    open++;
    maxOpen = Math.max(maxOpen, open);
    res.on('close', () => open--);
    void (async () => {
      const raw = await readBody(req);
      let body: RecordedRequest['body'] = null;
      try {
        body = JSON.parse(raw) as RecordedRequest['body'];
      } catch {
        body = null;
      }
      const messages = Array.isArray(body?.messages) ? body.messages : [];
      const recorded: RecordedRequest = {
        n: requests.length + 1,
        at: Date.now(),
        method: req.method ?? '',
        path: req.url ?? '',
        authorization: req.headers.authorization,
        body,
        user: messages.find((m) => m.role === 'user')?.content ?? '',
        system: messages.find((m) => m.role === 'system')?.content ?? '',
      };
      if (req.method !== 'POST' || req.url !== '/v1/chat/completions') {
        send(res, 404, '{"error":{"message":"not found"}}');
        return;
      }
      requests.push(recorded);
      const r = queue.shift() ?? fallback(recorded);
      if (r.kind === 'hang') return;
      const answer = () => {
        if (res.destroyed) return;
        if (r.kind === 'content') send(res, 200, completion(r.content, r.usage));
        else send(res, r.status, r.body ?? '', r.headers);
      };
      if (r.delayMs) {
        const t = setTimeout(() => {
          timers.delete(t);
          answer();
        }, r.delayMs);
        timers.add(t);
      } else {
        answer();
      }
    })().catch(() => res.destroy());
  });
  // Many planners at once: do not let the default backlog or keep-alive limits interfere.
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    script(...replies) {
      queue.push(...replies);
    },
    setDefault(r) {
      fallback = typeof r === 'function' ? r : () => r;
    },
    requestsFor(text) {
      return requests.filter((q) => q.user.includes(text));
    },
    maxInFlight: () => maxOpen,
    async close() {
      for (const t of timers) clearTimeout(t);
      timers.clear();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        // Hanging requests and keep-alive sockets would hold close() open.
        server.closeAllConnections();
      });
    },
  };
}
