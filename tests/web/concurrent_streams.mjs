// N streaming chat completions at once through the official OpenAI client:
// all must finish (some wait in the server's queue), and greedy replies to the
// same messages must be identical (slots do not disturb each other).
// Usage: node concurrent_streams.mjs BASE_URL MODEL N
import OpenAI from 'openai';

const [base, model, nStr] = process.argv.slice(2);
const client = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 120000 });
const one = async (i) => {
  const stream = await client.chat.completions.create({
    model, stream: true, temperature: 0, max_tokens: 48,
    messages: [{ role: 'user', content: 'Tell me a story' }],
  });
  let text = '';
  let finish = null;
  for await (const chunk of stream) {
    text += chunk.choices[0]?.delta?.content ?? '';
    finish = chunk.choices[0]?.finish_reason ?? finish;
  }
  return { i, text, finish };
};
const results = await Promise.allSettled(Array.from({ length: Number(nStr) }, (_, i) => one(i)));
const done = results.filter((r) => r.status === 'fulfilled' && r.value.finish);
const texts = new Set(done.map((r) => r.value.text));
for (const r of results) if (r.status === 'rejected') console.log(`client failed: ${r.reason}`);
console.log(`${done.length}/${results.length} streams finished, ${texts.size} distinct replies`);
process.exit(done.length === results.length && texts.size === 1 ? 0 : 1);
