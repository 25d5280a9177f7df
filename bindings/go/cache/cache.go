// Package cache is where go-mlx users look for KV caches: ingot's prompt caches, which hold the
// keys and values of a model for a shared prompt prefix so that it is prefilled once and then
// continued (Generate) or classified against (Classify, ClassifyTexts) any number of times.
//
//	c, err := cache.New(m) // m: a *model.Model
//	if err != nil { ... }
//	defer c.Close()
//	err = c.PrefillTemplate(template) // or c.Prefill(prefixIDs)
//	probs, err := c.ClassifyTexts(template, labels, texts, 0)
//
// The type is model.PromptCache (its methods need the model's internals); this package names
// it and its constructors.
package cache

import "ingot/model"

// PromptCache is model.PromptCache.
type PromptCache = model.PromptCache

// New makes an empty prompt cache for m (m.NewPromptCache).
func New(m *model.Model) (*PromptCache, error) { return m.NewPromptCache() }

// Load reads a cache that PromptCache.Save wrote, for m (m.LoadPromptCache).
func Load(m *model.Model, path string) (*PromptCache, error) { return m.LoadPromptCache(path) }
