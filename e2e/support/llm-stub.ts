/**
 * A tiny OpenAI-compatible mana-llm stand-in for the e2e run (docs/contract.md
 * §3, §4): every POST /v1/chat/completions answers one valid plan in a
 * fenced ```json block (create_task + create_note, each with a rationale).
 * GET /calls lists the user prompts it received, so a spec can tell whether
 * the server planned a given mission (its title is in the prompt).
 */
import { createServer, type Server } from 'node:http';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';

export const STUB_PLAN = {
  summary: 'Stub LLM: two small steps',
  steps: [
    { summary: 'Server: write the first task', toolName: 'create_task', params: { title: 'First task (server)', priority: 'high' }, rationale: 'The stub LLM always starts with one task.' },
    { summary: 'Server: note the objective', toolName: 'create_note', params: { title: 'Objective (server)', body: 'Written by the stub LLM' }, rationale: 'Keeps the objective next to the work.' },
  ],
};

export interface LlmCall {
  at: number;
  user: string;
}

export interface LlmStub {
  url: string;
  calls: LlmCall[];
  close(): Promise<void>;
}

export async function startLlmStub(): Promise<LlmStub> {
  const calls: LlmCall[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.method === 'GET' && req.url === '/calls') {
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(calls));
        return;
      }
      if (req.method !== 'POST' || !req.url?.endsWith('/chat/completions')) {
        res.writeHead(404).end();
        return;
      }
      let user = '';
      try {
        const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { messages?: { role: string; content: string }[] };
        user = body.messages?.filter((m) => m.role === 'user').map((m) => m.content).join('\n') ?? '';
      } catch {
        /* recorded with an empty prompt */
      }
      calls.push({ at: Date.now(), user });
      const content = `Here is the plan:\n\`\`\`json\n${JSON.stringify(STUB_PLAN)}\n\`\`\``;
      res.writeHead(200, { 'content-type': 'application/json' }).end(
        JSON.stringify({ id: `stub-${calls.length}`, object: 'chat.completion', choices: [{ index: 0, message: { role: 'assistant', content }, finish_reason: 'stop' }] }),
      );
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    calls,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((done) => server.close(() => done()));
    },
  };
}
