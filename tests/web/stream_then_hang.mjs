// Starts a long streaming completion, prints "streaming" once text arrives
// and reads on until it is killed (tests/cli/api.sh SIGKILLs it mid-stream to
// check that the server frees the slot).
// Usage: node stream_then_hang.mjs BASE_URL MODEL
import OpenAI from 'openai';

const [base, model] = process.argv.slice(2);
const client = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'unused', maxRetries: 0 });
const stream = await client.completions.create({ model, prompt: 'Once upon a time', max_tokens: 100000, stream: true });
let said = false;
for await (const chunk of stream) {
  if (!said && chunk.choices[0]?.text) {
    console.log('streaming');
    said = true;
  }
}
console.log('finished before the kill');
