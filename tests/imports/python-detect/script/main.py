from bottle import Bottle
app = Bottle()
