// The official OpenAI client against `engine api`: completions (plain and
// streamed), chat (plain and streamed, with usage), models, and a 404 for an
// unknown model. Greedy text must equal what `engine generate --temp 0`
// printed for the same prompt (given in files by tests/cli/api.sh).
// Usage: node openai_client.mjs BASE_URL MODEL PROMPT N GENERATE_OUT CHAT_PROMPT CHAT_GENERATE_OUT
import fs from 'node:fs';
import OpenAI from 'openai';

const [base, model, prompt, nStr, genFile, chatPrompt, chatGenFile] = process.argv.slice(2);
const n = Number(nStr);
const client = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 60000 });
let failed = 0;
const check = (name, cond, detail = '') => {
  if (cond) console.log(`ok - ${name}`);
  else { failed++; console.log(`FAIL - ${name} ${detail}`); }
};
// `engine generate` prints the prompt, the text and a newline.
const expected = fs.readFileSync(genFile, 'utf8').replace(/\n$/, '');
const chatExpected = fs.readFileSync(chatGenFile, 'utf8').replace(/\n$/, '');

const c = await client.completions.create({ model, prompt, max_tokens: n, temperature: 0 });
const text = c.choices[0].text;
check('completion: greedy text == engine generate --temp 0', prompt + text === expected,
  JSON.stringify({ got: prompt + text, expected }));
check('completion: usage', c.usage.completion_tokens === n && c.usage.total_tokens === c.usage.prompt_tokens + n,
  JSON.stringify(c.usage));
check('completion: object and finish_reason', c.object === 'text_completion' && c.choices[0].finish_reason === 'length');

let streamed = '';
let finish = null;
for await (const chunk of await client.completions.create({ model, prompt, max_tokens: n, temperature: 0, stream: true })) {
  streamed += chunk.choices[0]?.text ?? '';
  finish = chunk.choices[0]?.finish_reason ?? finish;
}
check('streamed completion == completion', streamed === text, JSON.stringify({ streamed, text }));
check('streamed completion finishes with length', finish === 'length');

const messages = [{ role: 'user', content: 'Tell me a story' }];
const chat = await client.chat.completions.create({ model, messages, max_tokens: 20, temperature: 0 });
const reply = chat.choices[0].message.content;
check('chat: role and object', chat.choices[0].message.role === 'assistant' && chat.object === 'chat.completion');
check('chat: greedy reply == engine generate on the chatml prompt', chatPrompt + reply === chatExpected,
  JSON.stringify({ got: chatPrompt + reply, chatExpected }));

let deltas = '';
let usage = null;
let chatFinish = null;
const stream = await client.chat.completions.create({
  model, messages, max_tokens: 20, temperature: 0, stream: true, stream_options: { include_usage: true },
});
for await (const chunk of stream) {
  if (chunk.usage) usage = chunk.usage;
  deltas += chunk.choices[0]?.delta?.content ?? '';
  chatFinish = chunk.choices[0]?.finish_reason ?? chatFinish;
}
check('streamed chat == chat', deltas === reply, JSON.stringify({ deltas, reply }));
check('streamed chat: usage chunk', usage && usage.completion_tokens === chat.usage.completion_tokens &&
  usage.prompt_tokens === chat.usage.prompt_tokens, JSON.stringify(usage));
check('streamed chat: finish_reason', chatFinish === chat.choices[0].finish_reason);

const lp = await client.chat.completions.create({ model, messages, max_tokens: 3, temperature: 0, logprobs: true, top_logprobs: 2 });
const content = lp.choices[0].logprobs?.content ?? [];
check('chat: logprobs for each token, greedy = most likely', content.length === 3 &&
  content.every((t) => t.top_logprobs.length === 2 && t.logprob <= 0 && t.token === t.top_logprobs[0].token));

const models = await client.models.list();
check('models: lists the served model', models.data.some((m) => m.id === model));

try {
  await client.chat.completions.create({ model: 'no-such-model', messages, max_tokens: 2 });
  check('unknown model: 404', false, 'accepted');
} catch (e) {
  check('unknown model: 404 model_not_found', e.status === 404 && e.code === 'model_not_found', `${e.status} ${e.code}`);
}
process.exit(failed ? 1 : 0);
