package webhook_test

import "go.uber.org/zap/zapcore"

type zapLevel = zapcore.Level
